"""Test set-up: a real Redis (started here when none answers) and real server processes."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import msgpack
import pytest
import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_RULES = ROOT / "examples" / "demo.yaml"
# DB 15 of the configured Redis, flushed by the tests; never point this at data you keep.
TEST_REDIS_URL = os.environ.get("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _steady(source: Path) -> Path:
    """`source` with its experiments and holdout taken out, in a file of the test run's own.

    The demo runs an experiment with a 10% holdout on its cart offer: one visitor
    in ten, drawn afresh by each test's browser, would reach the moment and see
    nothing. A test of the overlay must not fail one run in ten for it; the
    experiment tests use DEMO_RULES itself, with visitors chosen for their arm.
    """
    doc = yaml.safe_load(source.read_text())
    doc.pop("holdout", None)
    for rule in doc.get("rules", []):
        rule.pop("experiment", None)
    folder = Path(tempfile.mkdtemp(prefix="kairos-tests-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / source.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


# The demo's rules as every test's server gets them unless it names others: the
# demo's, with no experiment (see _steady).
STEADY_DEMO_RULES = _steady(DEMO_RULES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The configured Redis if it answers; else a redis-server started for this run.

    Never a fake: the contract is with the real server. No Redis at all is a
    failure, not a skip (`make test` installs redis-server when it is absent).
    """
    if _answers(TEST_REDIS_URL):
        yield TEST_REDIS_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(f"no Redis answers at {TEST_REDIS_URL} and redis-server is not installed (make test installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/15"
    deadline = time.monotonic() + 10
    while not _answers(url):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"could not start redis-server on port {port}")
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


@pytest.fixture
async def two(clean_redis):
    """Two server processes: two Redis engines on one Redis."""
    from kairos.engine.redis import RedisEngine

    a, b = RedisEngine(clean_redis, session_ttl_s=60), RedisEngine(clean_redis, session_ttl_s=60)
    await a.start(), await b.start()
    yield a, b
    await a.close(), await b.close()


def redis_contents(url: str) -> dict[str, str]:
    """Every key of the Redis database and its value, as text: to look for what must not be stored.

    A session's state (its version and a MessagePack map, lib/ops.lua) is shown as the map it holds.
    """
    r = raw_redis(url, decode_responses=True)
    raw = raw_redis(url)

    def string(key: str) -> object:
        value = raw.get(key)
        return stored_map(value) if key.endswith(":s") and value else value.decode()

    read = {"hash": r.hgetall, "list": lambda k: r.lrange(k, 0, -1), "set": r.smembers, "string": string,
            "zset": lambda k: r.zrange(k, 0, -1, withscores=True)}
    # A cluster client sends KEYS to one node unless told to ask every master.
    names = r.keys("*", target_nodes=redis.RedisCluster.PRIMARIES) if isinstance(r, redis.RedisCluster) else r.keys("*")
    return {key: str(read[r.type(key)](key)) for key in names}


def stored_session(url: str, sid: str) -> dict[str, str]:
    """A session's state as the Redis engine stores it (field -> string), {} when there is none."""
    from kairos.engine import keys

    value = raw_redis(url).get(keys.session(sid))
    return stored_map(value) if value else {}


def raw_redis(url: str, **options) -> redis.Redis:
    """A plain client of the Redis a test runs on: one Redis, or a cluster (redis+cluster://)."""
    from kairos.engine.cluster import is_cluster_url, startup_nodes

    if is_cluster_url(url):
        nodes, auth = startup_nodes(url)
        return redis.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(n.host, n.port) for n in nodes],
                                  **auth, **options)
    return redis.Redis.from_url(url, **options)


def stored_map(value: bytes) -> dict[str, str]:
    """A session's stored bytes as the map they hold: lib/ops.lua writes a version (a
    MessagePack string) and then the map; a Kairos before versions, the map alone."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(value)
    *version, state = unpacker
    assert version == [] or (len(version) == 1 and len(version[0]) == 14 and version[0][0] in "LP"), version
    return state


class Server:
    """A `kairos serve` process on a free port.

    It gets an admin token of its own (`--admin-token`), which `auth` sends as
    a bearer, unless `extra` names one or `own_token` is off (then the server
    uses or makes the one in its state directory, and `admin_token` is None).
    """

    def __init__(self, engine: str, redis_url: str, rules: Path | None = STEADY_DEMO_RULES, extra: list[str] | None = None,
                 own_token: bool = True) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.engine = engine
        self.redis_url = redis_url
        extra = list(extra or [])
        self.admin_token: str | None = None
        if "--admin-token" in extra:
            self.admin_token = extra[extra.index("--admin-token") + 1]
        elif own_token:
            self.admin_token = secrets.token_hex(16)
            extra += ["--admin-token", self.admin_token]
        self.cmd = [sys.executable, "-m", "kairos", "serve", "--engine", engine, "--redis-url", redis_url,
                    "--port", str(self.port), "--log-level", "info", *extra]
        if rules is not None:
            self.cmd += ["--rules", str(rules)]
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"kairos-test-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def restart(self) -> None:
        """Stop the process and start it again on the same port (a deploy, a crash)."""
        self.proc.terminate()
        self.proc.wait(10)
        self.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kairos serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kairos serve did not become ready:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    @property
    def auth(self) -> dict[str, str]:
        """The header that lets a script into /api and /admin."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def api(self, path: str) -> httpx.Response:
        """GET a staff JSON path (/api/…, /admin/…) with the admin token."""
        return httpx.get(f"{self.base}{path}", headers=self.auth, timeout=5)

    def session(self, sid: str) -> dict:
        r = self.api(f"/api/sessions/{sid}")
        r.raise_for_status()
        return r.json()

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", headers=self.auth, timeout=5).text

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of /metrics, by its exposed name (`kairos_refused_total`) and labels; None if absent."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    def session_when(self, sid: str, check: Callable[[dict], bool], timeout_s: float = 5.0) -> dict:
        """The session's state once `check` holds (the server records asynchronously)."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.session(sid)
            if check(state) or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


@pytest.fixture
def serve(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Callable[..., Server]]:
    """Start `kairos serve` processes (engine memory, redis, or cluster); they are stopped after the test."""
    started: list[Server] = []

    def start(engine: str = "memory", rules: Path | None = STEADY_DEMO_RULES, extra: list[str] | None = None,
              own_token: bool = True) -> Server:
        url = redis_url
        if engine == "redis":
            redis.Redis.from_url(redis_url).flushdb()
        elif engine == "cluster":  # the Redis engine on the run's Redis Cluster (redis+cluster://)
            engine, url = "redis", request.getfixturevalue("clean_cluster")
        server = Server(engine, url, rules, extra, own_token)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- real headless Chromium ------------------------------------------------------

CHROMIUM = os.environ.get("KAIROS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


# Module scope: Playwright's sync API keeps an event loop running while it is open,
# and the async tests of other modules need the main thread's loop free.
@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (Playwright's own download does not work here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: make test installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    yield p
    context.close()


def login(page, server: Server) -> None:
    """Log a browser page in to the dashboard through the login form; it ends on /dashboard."""
    page.goto(f"{server.base}/dashboard/login")
    page.fill("#token", server.admin_token)
    page.click("#login button[type=submit]")
    page.wait_for_url(f"{server.base}/dashboard")


# --- what a visitor does, shared by the browser tests ---------------------------


def connected(page) -> str:
    """Wait for the snippet's welcome on this page; the session id."""
    page.wait_for_function("() => window.kairos && window.kairos.state === 'open' && !!window.kairos.sid", timeout=10_000)
    return page.evaluate("window.kairos.sid")


def exit_through_the_top(page) -> None:
    """Move the pointer out of the page through its top edge: desktop exit intent."""
    page.mouse.move(640, 300)
    page.mouse.move(640, 40, steps=4)
    page.mouse.move(640, -10)


class OwnRedis:
    """A redis-server of this test's own, killed and started again on one port (never the shared one).

    `aof_dir`: keep an append-only file there (fsync every second, Redis's
    default policy), so a restart finds the data; without it a restart loses all.
    """

    def __init__(self, aof_dir: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.aof_dir = aof_dir

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make test installs it)")
        persistence = ["--appendonly", "no"] if self.aof_dir is None else [
            "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.aof_dir)]
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def own_redis():
    r = OwnRedis()
    r.start()
    yield r
    r.kill()


# A real Redis Cluster (tests/redis_cluster.py), below the rest so the fixtures above read as before.
from redis_cluster import LocalCluster  # noqa: E402


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of the run's own: 3 masters, 3 replicas. A test that kills nodes starts its own LocalCluster."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server or redis-cli is not installed: make test installs redis-server")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def clean_cluster(redis_cluster: LocalCluster) -> str:
    """The session cluster's URL (redis+cluster://...), every master flushed."""
    redis_cluster.flush()
    return redis_cluster.url
