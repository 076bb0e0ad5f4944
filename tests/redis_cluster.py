"""A real Redis Cluster for the tests: masters and replicas from redis-server, killed at will."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

HOST = "127.0.0.1"
SLOTS = 16384
# A node that has not answered PING by then is taken for one that lost its port to another process.
PING_WITHIN_S = 10.0
READY_WITHIN_S = 30.0


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free now (another process may still take one before redis-server binds it)."""
    # Held open together, so the kernel cannot hand out one port twice.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def command(port: int, *args: object, timeout: float = 2.0) -> object:
    """One command's reply as Redis sends it (CLUSTER INFO, CLUSTER NODES, INFO: text)."""
    # A bare connection has no response callbacks: redis-py turns CLUSTER INFO and
    # CLUSTER NODES into dicts for some commands' spellings and not others.
    conn = redis.Connection(host=HOST, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                            decode_responses=True)
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        conn.disconnect()


def fields(text: object) -> dict[str, str]:
    """`key:value` lines (CLUSTER INFO, INFO) as a dict."""
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for line in str(text).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            out[key] = value
    return out


@dataclass(frozen=True)
class Entry:
    """One line of CLUSTER NODES."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str
    slots: tuple[tuple[int, int], ...]

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    @property
    def is_master(self) -> bool:
        return "master" in self.flags


def parse_nodes(text: str) -> list[Entry]:
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        # ip:port@cport, with ",hostname" after it since Redis 7.
        address = parts[1].split(",")[0].split("@")[0]
        slots = []
        for s in parts[8:]:
            if s.startswith("["):  # a slot being migrated: still its owner's
                continue
            a, _, b = s.partition("-")
            slots.append((int(a), int(b or a)))
        entries.append(Entry(parts[0], int(address.rpartition(":")[2]), frozenset(parts[2].split(",")), parts[3],
                             tuple(slots)))
    return entries


@dataclass
class _Node:
    port: int
    bus: int
    proc: subprocess.Popen[bytes]
    log: Path


class LocalCluster:
    """A Redis Cluster of this test run's own on 127.0.0.1: `masters` masters, each with its replicas.

    Nothing is persisted (no RDB, no AOF): a replica holds its master's keys by
    replication only, as a failover test wants.
    """

    def __init__(self, folder: Path, masters: int = 3, replicas_per_master: int = 1,
                 node_timeout_ms: int = 2000) -> None:
        self.folder = Path(folder)
        self.master_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[tuple[str, int]] = []
        self.started_in_s: float | None = None
        self._procs: dict[int, _Node] = {}
        # The slots a node served when kill() took it down: what wait_promoted waits for.
        self._served: dict[int, tuple[tuple[int, int], ...]] = {}
        self._server = shutil.which("redis-server")
        self._cli = shutil.which("redis-cli")

    @property
    def startup(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.startup}"

    # -- start and stop --------------------------------------------------------

    def start(self) -> LocalCluster:
        if self._server is None or self._cli is None:
            raise RuntimeError("redis-server and redis-cli are not installed (make test installs redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        t0 = time.monotonic()
        try:
            count = self.master_count * (1 + self.replicas_per_master)
            # All spawned at once, then waited for: a node's start costs its wait, not the sum.
            pending = [self._spawn(*pair) for pair in self._port_pairs(count)]
            for node in pending:
                if not self._is_up(node):
                    # Its port was most likely taken between free_ports() and its bind: once more, on new ones.
                    self._discard(node)
                    again = self._spawn(*self._port_pairs(1)[0])
                    if not self._is_up(again):
                        raise RuntimeError(f"redis-server did not start on port {again.port} (twice):\n"
                                           f"{self._tail(again)}")
            self.nodes = [(HOST, port) for port in self._procs]
            self._create()
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Terminate every node (SIGKILL for any still up 5 s later); again is a no-op."""
        procs = list(self._procs.values())
        self._procs.clear()
        for node in procs:
            if node.proc.poll() is None:
                node.proc.terminate()
        deadline = time.monotonic() + 5
        for node in procs:
            try:
                node.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _port_pairs(self, count: int) -> list[tuple[int, int]]:
        ports = free_ports(2 * count)
        return [(ports[2 * i], ports[2 * i + 1]) for i in range(count)]

    def _spawn(self, port: int, bus: int) -> _Node:
        data = self.folder / str(port)
        data.mkdir(parents=True, exist_ok=True)
        log = self.folder / f"redis-{port}.log"
        args = [
            self._server, "--port", str(port), "--bind", HOST,
            "--cluster-enabled", "yes", "--cluster-port", str(bus),
            "--cluster-config-file", str(self.folder / f"nodes-{port}.conf"), "--dir", str(data),
            "--save", "", "--appendonly", "no",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # However long a replica has been cut off from its master, it may take over.
            "--cluster-replica-validity-factor", "0",
            "--cluster-allow-reads-when-down", "no",
            # Redis 7.0 waits 5 s for more replicas before a diskless full sync: 5 s on every start.
            "--repl-diskless-sync-delay", "0",
        ]
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        node = _Node(port, bus, proc, log)
        self._procs[port] = node
        return node

    def _is_up(self, node: _Node) -> bool:
        deadline = time.monotonic() + PING_WITHIN_S
        while time.monotonic() < deadline and node.proc.poll() is None:
            try:
                # Its pid, not a PONG: a port lost to another redis-server answers PING too.
                if fields(command(node.port, "INFO", "server", timeout=1.0)).get("process_id") == str(node.proc.pid):
                    return True
            except redis.RedisError:
                pass
            time.sleep(0.02)
        return False

    def _discard(self, node: _Node) -> None:
        self._procs.pop(node.port, None)
        if node.proc.poll() is None:
            node.proc.kill()
        node.proc.wait(5)

    def _create(self) -> None:
        args = [self._cli, "--cluster", "create", *(f"{h}:{p}" for h, p in self.nodes),
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"redis-cli --cluster create hung for 60 s:\n{e.stdout or ''}{e.stderr or ''}") from e
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _wait_ready(self, t0: float) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            try:
                why = self._not_ready()
            except redis.RedisError as e:
                why = repr(e)
            if why is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster in {self.folder} was not ready {time.monotonic() - t0:.0f} s "
                                   f"after its start: {why} (node logs: {self.folder}/redis-*.log)")
            time.sleep(0.05)

    def _not_ready(self) -> str | None:
        """Why the cluster is not ready for a test yet; None once it is."""
        replicas = 0
        for port in self._procs:
            info = fields(command(port, "CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok":
                return f"127.0.0.1:{port} says cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_assigned") != str(SLOTS):
                return f"127.0.0.1:{port} says cluster_slots_assigned:{info.get('cluster_slots_assigned')}"
            # Every node knowing every other: a client gets the same map from whichever it asks.
            if info.get("cluster_known_nodes") != str(len(self._procs)):
                return f"127.0.0.1:{port} knows {info.get('cluster_known_nodes')} of {len(self._procs)} nodes"
            # Each node's own view too: gossip tells the others of a replica's role a moment after its link is up.
            view = parse_nodes(str(command(port, "CLUSTER", "NODES")))
            serving = sum(1 for e in view if e.is_master and e.slots and not e.failing)
            following = sum(1 for e in view if "slave" in e.flags and not e.failing)
            if (serving, following) != (self.master_count, self.master_count * self.replicas_per_master):
                return f"127.0.0.1:{port} sees {serving} masters with slots and {following} replicas"
            repl = fields(command(port, "INFO", "replication"))
            if repl.get("role") == "slave":
                replicas += 1
                if repl.get("master_link_status") != "up":
                    return f"replica 127.0.0.1:{port} says master_link_status:{repl.get('master_link_status')}"
        expected = self.master_count * self.replicas_per_master
        if replicas != expected:
            return f"{replicas} replicas of {expected}"
        return None

    def _tail(self, node: _Node, lines: int = 20) -> str:
        try:
            return "\n".join(node.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- what a test asks of it ------------------------------------------------

    def _live_ports(self) -> list[int]:
        return [port for port, node in self._procs.items() if node.proc.poll() is None]

    def view(self) -> list[Entry]:
        """CLUSTER NODES as the first live node that answers sees it."""
        last: Exception | None = None
        for port in self._live_ports():
            try:
                return parse_nodes(str(command(port, "CLUSTER", "NODES")))
            except redis.RedisError as e:
                last = e
        raise RuntimeError(f"no node of the cluster in {self.folder} answers ({last!r})")

    def masters(self) -> list[tuple[str, int]]:
        """The masters now: flagged master, not failing, their process running."""
        live = set(self._live_ports())
        return [(HOST, e.port) for e in self.view() if e.is_master and not e.failing and e.port in live]

    def master_of(self, key: str) -> tuple[str, int]:
        """The master that serves `key`'s slot, as the cluster has it now (a failing one until its failover)."""
        slot = key_slot(key.encode())
        for e in self.view():
            if e.is_master and any(a <= slot <= b for a, b in e.slots):
                return HOST, e.port
        raise LookupError(f"no master serves slot {slot} (key {key!r})")

    def node_cpu_s(self) -> dict[int, float]:
        """CPU seconds each live node has used (INFO cpu: used_cpu_user + used_cpu_sys), by port; the benchmarks' figure."""
        out = {}
        for port in self._live_ports():
            try:
                cpu = fields(command(port, "INFO", "cpu"))
            except redis.RedisError:
                continue
            out[port] = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return out

    def flush(self) -> None:
        """FLUSHALL on every live master of this cluster, and on its replicas before returning."""
        for _, port in self.masters():
            command(port, "FLUSHALL")
            # A failover test after the flush must not promote a replica still holding the last test's keys.
            replicas = int(fields(command(port, "INFO", "replication")).get("connected_slaves", "0"))
            if replicas:
                command(port, "WAIT", replicas, 1000)

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port`, as a crash would: no shutdown, no goodbye to the cluster."""
        node = self._procs[port]
        try:
            self._served[port] = next((e.slots for e in self.view() if e.port == port), ())
        except RuntimeError:
            pass
        node.proc.kill()
        node.proc.wait(5)

    def wait_promoted(self, old_master_port: int, timeout_s: float = 30) -> float:
        """Wait until other masters serve every slot `old_master_port` served and every live node says cluster_state:ok.

        Returns the seconds waited.
        """
        t0 = time.monotonic()
        slots = self._served.get(old_master_port) or next(
            (e.slots for e in self.view() if e.port == old_master_port), ())
        if not slots:
            raise ValueError(f"127.0.0.1:{old_master_port} served no slots: kill() a master before waiting for its "
                             f"replica's promotion")
        while True:
            try:
                why = self._not_promoted(old_master_port, slots)
            except redis.RedisError as e:
                why = repr(e)
            if why is None:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"no replica took over the slots of 127.0.0.1:{old_master_port} within "
                                   f"{timeout_s} s: {why} (node logs: {self.folder}/redis-*.log)")
            time.sleep(0.05)

    def _not_promoted(self, old: int, slots: tuple[tuple[int, int], ...]) -> str | None:
        live = self._live_ports()
        for port in live:
            state = fields(command(port, "CLUSTER", "INFO")).get("cluster_state")
            if state != "ok":
                return f"127.0.0.1:{port} says cluster_state:{state}"
            owners = [e for e in parse_nodes(str(command(port, "CLUSTER", "NODES")))
                      if e.is_master and not e.failing and e.port != old and e.port in live]
            for a, b in slots:
                # Owners' ranges do not overlap: covered in full when the overlaps add up to the range.
                covered = sum(max(0, min(b, y) - max(a, x) + 1) for e in owners for x, y in e.slots)
                if covered != b - a + 1:
                    return f"127.0.0.1:{port} sees slots {a}-{b} not yet served by a new master"
        return None
