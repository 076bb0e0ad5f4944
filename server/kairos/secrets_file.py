"""Secrets the server keeps for itself in its state directory: made once, on first use, then read.

The admin token (kairos.staff) and the identify secret (session.uid_hash) are
both kept this way, each in a file of its own readable by its owner only.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path

log = logging.getLogger("kairos")

IDENTIFY_SECRET_FILE = "identify-secret"


class SecretFileError(Exception):
    """A stored secret cannot be used."""


def stored_secret(path: Path, what: str, nbytes: int) -> tuple[str, bool]:
    """The secret kept in `path`, made (`nbytes` random bytes, as hex) if there is none; and
    whether it was made now. `what` names it in errors ("the admin token").

    The file is written whole under another name and then linked into place, so
    two processes starting at once on a fresh directory end up with one secret,
    and neither reads a half-written file. Mode 0600, in a 0700 directory.
    """
    path = Path(path)
    existing = _read(path, what)
    if existing is not None:
        return existing, False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Hex: it never starts with '-' (which a command line would read as an option)
    # and a double click in a terminal selects all of it.
    secret = secrets.token_hex(nbytes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = _read(path, what)
            if existing is None:
                raise SecretFileError(f"{path} vanished while it was being created") from None
            return existing, False
    finally:
        os.unlink(tmp)
    return secret, True


def identify_secret(state_dir: Path) -> tuple[str, bool]:
    """The identify hash's secret kept in `state_dir`/identify-secret (256 bits), made on first use."""
    return stored_secret(Path(state_dir) / IDENTIFY_SECRET_FILE, "the identify secret", 32)


def _read(path: Path, what: str) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"cannot read {what} from {path}: {exc}") from None
    if not text:
        raise SecretFileError(f"{path} is empty: delete it and a new one is generated at the next start")
    if mode & 0o077:
        log.warning("%s can be read by other users of this machine: chmod 600 it", path)
    return text
