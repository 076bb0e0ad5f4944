"""What `kairos.identify(uid)` keeps: a hash keyed by the installation's own secret (issue 13, finding 7).

The secret lives in the state directory (made on the first run, like the admin
token) or in KAIROS_IDENTIFY_SECRET; without it, a list of email addresses and
the public site key no longer reverse a stored hash.
"""

from __future__ import annotations

import hashlib
import hmac
import stat

from wsclient import Visitor

from kairos.secrets_file import identify_secret

EMAIL = "bob@example.com"


def test_the_secret_file_is_made_private_once_and_then_reused(tmp_path):
    state = tmp_path / "state"
    secret, created = identify_secret(state)
    assert created and len(secret) == 64, "256 bits, as hex"
    assert stat.S_IMODE((state / "identify-secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert identify_secret(state) == (secret, False)
    assert [p.name for p in state.iterdir()] == ["identify-secret"], "no temporary file left behind"


async def identified_hash(server) -> str:
    """The hash a session of `server` keeps after its visitor is identified as EMAIL."""
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "identify", "uid": EMAIL})
    state = server.session_when(v.sid, lambda s: bool(s["uid"]))
    await v.leave()
    assert any(e.get("uid") == state["uid"] for e in state["log"]), "the log shows the hash the session keeps"
    assert EMAIL not in server.api(f"/api/sessions/{v.sid}").text
    return state["uid"]


async def test_processes_sharing_a_state_directory_hash_alike_and_no_one_else_can(serve, tmp_path, monkeypatch):
    monkeypatch.delenv("KAIROS_IDENTIFY_SECRET", raising=False)
    state = tmp_path / "state"
    first = serve("memory", extra=["--state-dir", str(state)])
    second = serve("memory", extra=["--state-dir", str(state)])
    secret = (state / "identify-secret").read_text().strip()
    assert stat.S_IMODE((state / "identify-secret").stat().st_mode) == 0o600
    kept = await identified_hash(first)
    assert kept == await identified_hash(second), "one customer, one hash, on every process"
    assert kept == hmac.new(secret.encode(), f"demo:{EMAIL}".encode(), hashlib.sha256).hexdigest()[:32]
    assert kept != hashlib.sha256(f"demo:{EMAIL}".encode()).hexdigest()[:32], "the site key alone does not reverse it"
    elsewhere = serve("memory", extra=["--state-dir", str(tmp_path / "another")])
    assert await identified_hash(elsewhere) != kept, "another installation, another secret"
    first.restart()
    assert (state / "identify-secret").read_text().strip() == secret, "made once, kept across restarts"
    assert await identified_hash(first) == kept


async def test_the_secret_can_be_given_in_the_environment(serve, tmp_path, monkeypatch):
    monkeypatch.setenv("KAIROS_IDENTIFY_SECRET", "a secret the operator shares between hosts")
    server = serve("memory", extra=["--state-dir", str(tmp_path / "state")])
    expected = hmac.new(b"a secret the operator shares between hosts", f"demo:{EMAIL}".encode(), hashlib.sha256)
    assert await identified_hash(server) == expected.hexdigest()[:32]
    assert not (tmp_path / "state" / "identify-secret").exists(), "no file when the environment gives it"
