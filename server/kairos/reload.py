"""Replacing the rules in force while the server runs: from the watched file, from the admin API,
or from a change staff make on the dashboard (the editor's Apply, an experiment shipped or stopped).

A new document is parsed and validated in full before anything changes; an
invalid one is refused as a whole (logged, and remembered as the runtime's
`last_refusal`) and the rules in force stay. A valid one is swapped in with one
assignment of `runtime.rules`, so each event batch sees the old rules or the new
ones, never a mix.

The file is watched by polling: no dependency, and it works the same on every
file system, including bind mounts and network shares where inotify is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import bodies, rules_history
from .rules import Problem, RulesError, Ruleset, parse_rules

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("kairos")

# The `source` of rules put in force through PUT /admin/rules; problems name it as their file.
ADMIN_SOURCE = "admin"
# A file whose mtime is this recent may change again within the same timestamp
# tick with the same size ("racily clean", as git calls it): hash it anyway.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class FileSignature:
    """What the watcher knows of the rules file: its stat identity and a hash of its content."""

    ino: int
    mtime_ns: int
    size: int
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> "FileSignature | None":
        """The file's signature now; None when it cannot be read."""
        try:
            st = os.stat(path)
            data = Path(path).read_bytes()
        except OSError:
            return None
        return cls(st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())

    def same_stat(self, st: os.stat_result) -> bool:
        return (self.ino, self.mtime_ns, self.size) == (st.st_ino, st.st_mtime_ns, st.st_size)


def parse(rt: "Runtime", text: str, source: str) -> Ruleset:
    """Validate a rules document against the templates that exist now; RulesError if invalid."""
    try:
        # Model files are named relative to the rules file, whichever way the text came.
        base = rt.settings.rules.parent if rt.settings.rules is not None else None
        return parse_rules(text, source, rt.renderer.names(), rt.renderer.problem, base)
    except RecursionError:  # PyYAML recurses once per level of nesting: `[[[[…`
        raise RulesError([Problem(source, None, "", "nested too deeply to be a rules document")]) from None


def not_text(source: str, exc: UnicodeDecodeError) -> RulesError:
    return RulesError([Problem(source, None, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")])


async def replace_from_text(rt: "Runtime", text: str, source: str) -> int:
    """Validate `text` and put it in force; its version. RulesError (recorded as the last refusal) if invalid."""
    try:
        ruleset = await asyncio.to_thread(parse, rt, text, source)
    except RulesError as exc:
        rt.refuse_rules(source, exc)
        raise
    if source == ADMIN_SOURCE:
        rt.rules_text = text
    return rt.replace_rules(ruleset)


# --- changes staff make: the editor's Apply, an experiment shipped or stopped ---------------

# One change at a time per server: a ship reads the document, edits it and writes
# it back, and an Apply meanwhile would be lost under it.
_changing: "weakref.WeakKeyDictionary[Runtime, asyncio.Lock]" = weakref.WeakKeyDictionary()


def rules_document(rt: "Runtime") -> str:
    """The rules document staff edit: the rules file as it is now, or the text put in force
    through the admin API or the editor when there is no file (or the API replaced it)."""
    path = rt.settings.rules
    if path is not None and rt.rules.source != ADMIN_SOURCE:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return Path(path).read_text(encoding="utf-8")
    return rt.rules_text


async def put_in_force(rt: "Runtime", edit: Callable[[str], str], what: str) -> Response:
    """Put a change staff made in force, or refuse it whole and change nothing.

    `edit` makes the new document from the one in force (`rules_document`); a
    ValueError from it is refused (409) with its message. The document is validated
    as a whole (422 with its problems); with a rules file the file is replaced
    atomically, so the change survives a restart and reaches every process watching
    the file. The change is announced to the dashboards and recorded in the rules
    history as `what` ("edited in the rules editor", "experiment x: shipped b").
    """
    lock = _changing.setdefault(rt, asyncio.Lock())
    async with lock:
        try:
            text = edit(rules_document(rt))
        except ValueError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=409)
        path = rt.settings.rules
        source = str(path) if path is not None else ADMIN_SOURCE
        try:
            ruleset = await asyncio.to_thread(parse, rt, text, source)
        except RulesError as exc:
            return JSONResponse({"ok": False, "problems": problems_json(exc)}, status_code=422)
        if path is not None:
            try:
                await asyncio.to_thread(write_atomically, Path(path), text)
            except OSError as exc:
                return JSONResponse({"ok": False, "error": f"could not write {path}: {exc.strerror}"}, status_code=500)
            if rt.rules_watcher is not None:
                rt.rules_watcher.seen = FileSignature.of(path)  # this content is in force: not a change to reload
        else:
            rt.rules_text = text
        version = rt.replace_rules(ruleset)
        rt.feed.announce("rules", version=version, rules=[r.id for r in ruleset.rules])
        await asyncio.to_thread(rules_history.record, rt.settings.state_dir, what, text, version, source, "dashboard",
                                rt.node_id)
    log.info("staff put rules version %d in force (%s)", version, what)
    return JSONResponse({"ok": True, "version": version, "rules": [r.id for r in ruleset.rules]})


def write_atomically(path: Path, text: str) -> None:
    """Replace a file whole: a reader (another process's watcher) sees the old content or the new."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RulesWatcher:
    """Polls the rules file and puts each new valid version in force.

    Every `poll_s`: stat the file; when its inode, mtime or size changed (or the
    mtime is too recent to trust), read it and compare a hash of the content with
    the last content seen. New content is parsed once it has stayed the same for
    one poll, so a file caught while an editor writes it is not read half-written.
    An identical file saved again changes nothing, a file replaced by rename (how
    most editors save) is read whole, and a file missing for a moment (deleted,
    then written) keeps the rules in force and is reported at most once.
    """

    def __init__(self, rt: "Runtime", path: Path, poll_s: float, seen: FileSignature | None = None) -> None:
        self.rt = rt
        self.path = Path(path)
        self.source = str(path)
        self.poll_s = poll_s
        # The content last seen (accepted or refused); None when the file could not be read.
        self.seen = seen
        # New content seen once, waiting to be seen unchanged at the next poll.
        self.pending: FileSignature | None = None
        self.missing_polls = 0
        self.unreadable_reported = False
        self.polls = 0
        self.checked_at_ms: int | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher outlives any one bad poll
                log.exception("rules: could not check %s", self.source)

    async def poll(self) -> None:
        """One look at the file; put its content in force if it is new and valid."""
        try:
            await self._poll()
        finally:
            self.polls += 1
            self.checked_at_ms = int(time.time() * 1000)

    async def _poll(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._unreadable(exc)
            return
        if self.seen is not None and self.seen.same_stat(st) and time.time_ns() - st.st_mtime_ns > RACY_NS:
            self.missing_polls = 0
            self.pending = None
            return
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self._unreadable(exc)
            return
        self.missing_polls = 0
        self.unreadable_reported = False
        sig = FileSignature(st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())
        if self.seen is not None and sig.sha256 == self.seen.sha256:
            self.seen = sig  # same content (saved again, touched, or back after a moment away)
            self.pending = None
            return
        if self.pending != sig:
            # New content: read it again at the next poll, and use it only if it
            # is still the same then. An editor that writes in place (truncate,
            # then write) can be caught halfway; half a file is neither put in
            # force nor reported.
            self.pending = sig
            return
        self.pending = None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._refuse(sig, not_text(self.source, exc))
            return
        try:
            ruleset = await asyncio.to_thread(parse, self.rt, text, self.source)
        except RulesError as exc:
            self._refuse(sig, exc)
            return
        except Exception as exc:  # a fault in validation: refuse this content once, not at every poll
            log.exception("rules: could not validate %s", self.source)
            self._refuse(sig, RulesError([Problem(self.source, None, "", f"could not be validated: {exc!r}")]))
            return
        self.seen = sig
        self.rt.replace_rules(ruleset)

    def _refuse(self, sig: FileSignature, exc: RulesError) -> None:
        # Remember the refused content, so it is reported once, not at every poll.
        self.seen = sig
        self.rt.refuse_rules(self.source, exc)

    def _unreadable(self, exc: OSError) -> None:
        """A missing or unreadable file keeps the rules in force; reported once, from its second poll.

        An editor that deletes and rewrites leaves the file missing for a moment:
        one poll that finds nothing is not worth a refusal.
        """
        self.missing_polls += 1
        if self.missing_polls < 2 or self.unreadable_reported:
            return
        self.unreadable_reported = True
        # `seen` stays: the same content coming back is not a reload.
        self.rt.refuse_rules(self.source, RulesError([Problem(self.source, None, "", f"cannot read: {exc.strerror}")]))

    def status(self) -> dict[str, object]:
        return {"file": self.source, "poll_s": self.poll_s, "polls": self.polls, "checked_at_ms": self.checked_at_ms}


# --- the admin API: GET and PUT /admin/rules ------------------------------------------
# Staff only: kairos.staff's guard admits the admin token as a bearer, or a
# dashboard login with CSRF proof, before a request gets here.

MAX_ADMIN_BODY = bodies.RULES_BYTES
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})


def rules_status(rt: "Runtime") -> dict[str, Any]:
    """The rules in force, as GET /admin/rules shows them."""
    from .rules.describe import summaries

    ruleset = rt.rules
    refusal = rt.last_refusal
    return {
        "version": rt.rules_version,
        "source": ruleset.source,
        "rules": summaries(ruleset),
        "last_refusal": None if refusal is None else
        {"at_ms": refusal.at_ms, "source": refusal.source, "message": refusal.message},
        "watching": rt.rules_watcher.status() if rt.rules_watcher is not None else None,
    }


async def get_rules(request: Request) -> Response:
    return JSONResponse(rules_status(request.app.state.kairos))


async def put_rules(request: Request) -> Response:
    """Replace the rules in force with the YAML document in the body, or refuse it whole (422)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype not in YAML_TYPES:
        return JSONResponse({"ok": False, "error": f"send the rules as application/yaml or text/plain, not {ctype}"},
                            status_code=415)
    body = await read_body(request)
    if isinstance(body, Response):
        return body
    rt: Runtime = request.app.state.kairos
    try:
        text = body.decode("utf-8")
        version = await replace_from_text(rt, text, ADMIN_SOURCE)
    except UnicodeDecodeError as exc:
        err = not_text(ADMIN_SOURCE, exc)
        rt.refuse_rules(ADMIN_SOURCE, err)
        return _refused(err)
    except RulesError as exc:
        return _refused(exc)
    await asyncio.to_thread(rules_history.record, rt.settings.state_dir, "replaced through /admin/rules", text,
                            version, ADMIN_SOURCE, "admin API", rt.node_id)
    return JSONResponse({"ok": True, "version": version, "rules": [r.id for r in rt.rules.rules]})


async def read_body(request: Request) -> bytes | Response:
    """A rules document sent in a request's body, or the answer to one too big to read."""
    too_big = JSONResponse({"ok": False, "error": f"a rules document is at most {MAX_ADMIN_BODY} bytes"}, status_code=413)
    try:
        return await bodies.read(request, MAX_ADMIN_BODY)
    except bodies.TooLarge:
        return too_big
    except bodies.BadLength as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)


def problems_json(exc: RulesError) -> list[dict[str, Any]]:
    """A refused document's problems as the APIs answer them."""
    return [{"line": p.line, "path": p.path, "reason": p.reason} for p in exc.problems]


def _refused(exc: RulesError) -> Response:
    return JSONResponse({"ok": False, "problems": problems_json(exc), "message": str(exc)}, status_code=422)


admin_routes = [
    Route("/admin/rules", get_rules, methods=["GET"]),
    Route("/admin/rules", put_rules, methods=["PUT"]),
]
