"""Failover under traffic (issue 18's acceptance): 500 streaming sessions on a Redis Cluster, kill -9 of one master.

One `kairos serve` on a 3-master, 3-replica cluster of this test's own (it kills a
node: never the run's shared cluster). 500 visitors stream a batch every 300-500 ms;
half of them add to cart, arming a delayed rule due 3 s later, around the kill. Then
the master serving the most of the sessions is killed with SIGKILL, its replica is
promoted, and the test measures what the visitors saw:

- how many batches were answered `server_error` (by the visitors' own tally, and by
  `kairos_refused_total{code="server_error"}`);
- how long until every visitor was served again;
- what became of the timers armed before the kill: fired on time, fired late, lost.

The websocket protocol acknowledges no batch, so each batch is followed by a probe on
the same socket: feedback for an overlay id that was never shown (`probe<seq>`). The
server handles a socket's frames in order, and answers the probe only by reading the
session in Redis (lua/feedback.lua): `unknown_overlay` naming the probe means the
batch before it and the probe were both served; a `server_error` means one was not.

Asserted: the server process never dies and answers /healthz after; every visitor is
served again within RECOVER_WITHIN_S; no frame ever names an empty or another session
id, every session is stored under its own visitor, and a hello naming a session of the
killed master's slots is welcomed under that id or a new one of its visitor's (retried
on `server_error` as the snippet does); every timer on a surviving shard of the queue
fires. Printed, on one line starting with FAILOVER: (`pytest -s`), with details below
it: the figures above, and the hellos refused. State written to the killed master in
its last milliseconds may be lost (no AOF, asynchronous replication): counted and
printed, not asserted; so is how late the timers came.

No marker: there is no `slow` one (pyproject's markers), and the other cluster tests
have none. It takes ~20 s, or ~50 s when timers wait out their 30 s lease
(engine.base.TIMER_LEASE_MS) before firing, ~80 s when some wait two.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgpack
from redis.crc import key_slot
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import Server, raw_redis
from kairos.engine import keys
from redis_cluster import LocalCluster
from test_workers import RULES as WORKERS_RULES
from wsclient import Visitor, hello_frame

RULES = WORKERS_RULES.replace("after: 1s", "after: 3s")  # test_workers.py's delayed rule, due around the kill
assert "after: 3s" in RULES
VISITORS = 500
ARMING = 250  # visitors who add to cart, arming `later`
DELAY_S = 3.0  # the rule's `after`
# Each visitor's pace: a batch and its probe, then a pause drawn in this range.
PAUSE_S = (0.3, 0.5)
# From the end of the arrivals: the adds to cart are spread over ARM_WINDOW_S, the kill comes at KILL_AT_S.
ARM_WINDOW_S = (1.5, 4.5)
KILL_AT_S = 5.0
# A batch and its probe unanswered for this long count as unanswered (the server hangs?).
REPLY_WITHIN_S = 10.0
RECOVER_WITHIN_S = 60.0
PROMOTED_WITHIN_S = 30.0
# A timer that fires more than this after its due time is late; one that has not fired
# TIMERS_WITHIN_S after the kill is lost. A claimed timer's lease is 30 s
# (engine.base.TIMER_LEASE_MS): a timer claimed and not finished waits that long, and
# it has been seen to wait twice (one run in 15 had 12 timers still unfired 60 s after the kill).
LATE_S = 2.0
TIMERS_WITHIN_S = 90.0
PROBE = re.compile(r"probe(\d+)")


@dataclass
class Streamer:
    """One visitor's page: streams batches and probes, and records every frame it gets."""

    v: Visitor
    arm_at_s: float | None = None  # monotonic time to add to cart (None: never)
    armed_ms: int | None = None  # wall clock of the add to cart (the server's now, within ms)
    armed_s: float | None = None
    current: int = 0  # the seq of the batch (and number of the probe) in flight
    sent_s: float = 0.0
    batch_failed: bool = False
    done: asyncio.Future | None = None
    served: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered) of cycles served whole
    failed: list[float] = field(default_factory=list)  # sent time of cycles not served whole
    server_errors: list[tuple[float, int | None]] = field(default_factory=list)  # (when, seq)
    late_probes: int = 0
    unanswered: int = 0
    shows: list[tuple[float, dict]] = field(default_factory=list)
    other: list[dict] = field(default_factory=list)  # any frame not expected here
    wrong_sid: list[dict] = field(default_factory=list)
    closed: str | None = None

    def _finish(self, probe_ok: bool, now: float) -> None:
        if self.done is None or self.done.done():
            return
        if probe_ok and not self.batch_failed:
            self.served.append((self.sent_s, now))
        else:
            self.failed.append(self.sent_s)
        self.done.set_result(None)

    async def read(self) -> None:
        try:
            async for raw in self.v.ws:
                now = time.monotonic()
                f = msgpack.unpackb(raw)
                if "sid" in f and f["sid"] != self.v.sid:
                    self.wrong_sid.append(f)
                t, code = f.get("t"), f.get("code")
                if t == "error" and code == "server_error":
                    seq = f.get("seq")
                    self.server_errors.append((now, seq))
                    if seq == self.current:
                        self.batch_failed = True  # nothing of the batch stored; the probe's answer follows
                    elif seq is None:
                        # The probe's (or a later step of the batch's: then the probe's own answer
                        # comes during the next cycle, and is counted in late_probes).
                        self._finish(False, now)
                elif t == "error" and code == "unknown_overlay":
                    m = PROBE.search(f.get("msg", ""))
                    if m and int(m.group(1)) == self.current:
                        self._finish(True, now)
                    else:
                        self.late_probes += 1
                elif t == "show":
                    self.shows.append((now, f))
                else:
                    self.other.append(f)
        except ConnectionClosed as exc:
            self.closed = repr(exc)
            if self.done is not None and not self.done.done():
                self.done.set_result(None)

    async def stream(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set() and self.closed is None:
            self.current = self.v.seq + 1
            self.batch_failed = False
            self.done = loop.create_future()
            self.sent_s = time.monotonic()
            if self.arm_at_s is not None and self.armed_ms is None and self.sent_s >= self.arm_at_s:
                self.armed_ms, self.armed_s = int(time.time() * 1000), self.sent_s
                event = {"e": "add_to_cart", "sku": "linen", "qty": 1, "price": 49.0}
            elif self.current % 2:
                event = {"e": "dwell", "ms": 400}
            else:
                event = {"e": "scroll", "pct": min(100, self.current)}
            try:
                await self.v.events(event)
                await self.v.send({"v": 1, "t": "feedback", "oid": f"probe{self.current}", "act": "shown",
                                   "ts": int(time.time() * 1000)})
                await asyncio.wait_for(asyncio.shield(self.done), REPLY_WITHIN_S)
            except ConnectionClosed as exc:
                self.closed = self.closed or repr(exc)
                return
            except asyncio.TimeoutError:
                self.unanswered += 1
                self.done.set_result(None)
                self.failed.append(self.sent_s)
            await asyncio.sleep(random.uniform(*PAUSE_S))

    def served_after(self, t: float) -> float | None:
        """When the first cycle sent after `t` was answered in full (monotonic); None if none yet."""
        return next((answered for sent, answered in self.served if sent >= t), None)


async def arrive(ws_url: str, vid: str, sid: str, refused: list[str], tries: int = 8) -> Visitor:
    """A page load's hello naming `sid`, sent again on `server_error` after a backoff, as the snippet does."""
    for attempt in range(tries):
        ws = await connect(ws_url, compression=None)
        await ws.send(msgpack.packb(hello_frame(vid, sid)))
        first = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
        if first["t"] == "welcome":
            return Visitor(ws, first["sid"], vid)
        await ws.close()
        assert first["t"] == "error" and first["code"] == "server_error", first
        refused.append(vid)
        await asyncio.sleep(random.uniform(0.5, min(20.0, 0.5 * 2 ** (attempt + 1))))
    raise AssertionError(f"the hello of {vid} naming {sid} was refused {tries} times")


def where_queued(url: str, sids: list[str]) -> Counter:
    """Where the timers of `sids` are in the sharded queue now: due, leased (lapsed or not, to a live
    holder or not), or not there at all."""
    r = raw_redis(url, decode_responses=True)
    now = time.time() * 1000
    alive = {n: float(ms) for n, ms in r.zrange(keys.NODES, 0, -1, withscores=True)}
    found: Counter = Counter()
    for sid in sids:
        due, data, leased, holder = keys.timer_keys(keys.timer_shard(sid))
        member = f"{sid}|later"
        if r.zscore(due, member) is not None:
            found["due"] += 1
        elif (deadline := r.zscore(leased, member)) is not None:
            who = r.hget(holder, member)
            found[f"leased{' (lapsed)' if deadline <= now else ''} to a "
                  f"{'live' if alive.get(who, 0) > now else 'dead'} holder"] += 1
        else:
            found["in data only" if r.hexists(data, member) else "gone"] += 1
    r.close()
    return found


def owner(view, key: str) -> int:
    """The port of the master serving `key`'s slot in a CLUSTER NODES view."""
    slot = key_slot(key.encode())
    return next(e.port for e in view if e.is_master and any(a <= slot <= b for a, b in e.slots))


async def test_failover_under_traffic(tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with LocalCluster(tmp_path / "cluster") as cluster:
        # warning: no info line per probe refused as unknown_overlay (over a thousand a second).
        server = Server("redis", cluster.url, rules, ["--log-level", "warning"])
        try:
            await _failover(cluster, server)
        finally:
            server.stop()


async def _failover(cluster: LocalCluster, server: Server) -> None:
    crashed: list[str] = []

    async def watch_process(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if server.proc.poll() is not None:
                crashed.append(f"kairos serve exited with {server.proc.returncode}")
                return
            await asyncio.sleep(0.2)

    t_start = time.monotonic()
    visitors: list[Visitor] = []
    for _ in range(VISITORS // 50):  # 50 handshakes at a time
        visitors += await asyncio.gather(*(Visitor.arrive(server.ws_url) for _ in range(50)))
    arrived_in_s = time.monotonic() - t_start
    sids = [v.sid for v in visitors]
    assert all(sids) and len(set(sids)) == VISITORS, "every welcome names a session of its own"
    assert all(keys.session_tag(v.sid) == keys.visitor_tag(v.vid) for v in visitors), \
        "each sid carries its visitor's tag"

    view = cluster.view()
    session_master = {v.sid: owner(view, keys.session(v.sid)) for v in visitors}
    shard_master = {k: owner(view, keys.timer_keys(k)[0]) for k in range(keys.TIMER_SHARDS)}
    per_master = Counter(session_master.values())
    victim = per_master.most_common(1)[0][0]
    killed_shards = {k for k, port in shard_master.items() if port == victim}
    holds = [what for what, key in (("{timers} nodes", keys.NODES), ("wake channel", keys.TIMERS_WAKE))
             if owner(view, key) == victim]

    t0 = time.monotonic()
    streamers = [Streamer(v) for v in visitors]
    for i, s in enumerate(streamers[:ARMING]):
        s.arm_at_s = t0 + ARM_WINDOW_S[0] + (ARM_WINDOW_S[1] - ARM_WINDOW_S[0]) * i / ARMING
    stop, done = asyncio.Event(), asyncio.Event()
    readers = [asyncio.create_task(s.read()) for s in streamers]
    senders = [asyncio.create_task(s.stream(stop)) for s in streamers]
    watcher = asyncio.create_task(watch_process(done))
    try:
        await asyncio.sleep(KILL_AT_S - (time.monotonic() - t0))
        errors_before = await asyncio.to_thread(server.metric, "kairos_refused_total", code="server_error") or 0
        served_before = sum(len(s.served) for s in streamers)
        steady_errors = sum(len(s.server_errors) for s in streamers)

        await asyncio.to_thread(cluster.kill, victim)
        t_kill = time.monotonic()
        promoted_s = await asyncio.to_thread(cluster.wait_promoted, victim, PROMOTED_WITHIN_S)

        # Streaming on until every visitor had a batch sent after the kill served in full.
        deadline = t_kill + RECOVER_WITHIN_S
        while time.monotonic() < deadline and not crashed:
            if all(s.served_after(t_kill) is not None or s.closed for s in streamers):
                break
            await asyncio.sleep(0.1)
        back = {s.v.sid: s.served_after(t_kill) for s in streamers}
        all_back_s = time.monotonic() - t_kill

        # The timers armed before the kill: each fired, or lost once TIMERS_WITHIN_S have passed.
        armers = [s for s in streamers if s.armed_ms is not None and s.armed_s < t_kill]
        deadline = t_kill + TIMERS_WITHIN_S
        while time.monotonic() < deadline and not crashed and not all(s.shows for s in armers):
            await asyncio.sleep(0.2)
        timers_waited_s = time.monotonic() - t_kill
    finally:
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        done.set()
        await watcher

    assert not crashed, f"{crashed[0]}:\n{server.output()[-5000:]}"
    assert server.proc.poll() is None, "kairos serve is running"
    assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    errors_metric = (server.metric("kairos_refused_total", code="server_error") or 0)

    # --- what the visitors saw ----------------------------------------------------
    wrong = [(s.v.sid, f) for s in streamers for f in s.wrong_sid]
    closed = [(s.v.sid, s.closed) for s in streamers if s.closed]
    not_back = [sid for sid, at in back.items() if at is None]
    back_s = sorted(at - t_kill for at in back.values() if at is not None) or [float("nan")]
    on_victim = [s for s in streamers if session_master[s.v.sid] == victim]
    frames_errors = [e for s in streamers for e in s.server_errors]
    batch_errors = sum(1 for _, seq in frames_errors if seq is not None)
    hit = sum(1 for s in streamers if any(t >= t_kill for t, _ in s.server_errors))
    failed_cycles = sum(1 for s in streamers for sent in s.failed if sent >= t_kill - 1)
    unanswered = sum(s.unanswered for s in streamers)
    others = Counter(f.get("code") or f.get("t") for s in streamers for f in s.other)

    # --- every session under its own visitor, and which ones lost state --------------
    async with httpx.AsyncClient(base_url=server.base, headers=server.auth, timeout=10) as c:
        sem = asyncio.Semaphore(8)  # a few at a time, as dashboards would read them

        async def state(sid: str) -> dict:
            async with sem:
                r = await c.get(f"/api/sessions/{sid}")
                return r.json() if r.status_code == 200 else {"status": r.status_code}

        states = dict(zip(sids, await asyncio.gather(*(state(sid) for sid in sids))))
    strangers = [(v.sid, v.vid, states[v.sid].get("vid", states[v.sid])) for v in visitors
                 if states[v.sid].get("vid") != v.vid]
    restored = [sid for sid, st in states.items() if st.get("restored")]
    # The sessions of the killed master's slots, opened again by a new page load (a hello naming them),
    # retried on `server_error` as the snippet does (backoff from 500 ms).
    for s in on_victim:
        await s.v.leave()
    refused_hellos: list[str] = []
    again = await asyncio.gather(*(arrive(server.ws_url, s.v.vid, s.v.sid, refused_hellos) for s in on_victim),
                                 return_exceptions=True)
    resumed = renamed = 0
    never_welcomed = [repr(v) for v in again if isinstance(v, BaseException)]
    bad_welcomes = []
    for s, v in zip(on_victim, again):
        if isinstance(v, BaseException):
            continue
        if not v.sid or keys.session_tag(v.sid) != keys.visitor_tag(v.vid) or v.sid in set(sids) - {s.v.sid}:
            bad_welcomes.append((s.v.vid, s.v.sid, v.sid))
        resumed += v.sid == s.v.sid
        renamed += v.sid != s.v.sid

    # --- timers -------------------------------------------------------------------
    def lateness(s: Streamer) -> float | None:
        firsts = [t for t, f in s.shows if f.get("rule") == "later"]
        return min(firsts) - (s.armed_s + DELAY_S) if firsts else None

    outcomes: dict[str, Counter] = {"killed": Counter(), "surviving": Counter()}
    late_s: list[float] = []
    spread: dict[str, list[float]] = {}
    lost_surviving: list[str] = []
    for s in armers:
        shard = keys.timer_shard(s.v.sid)
        where = "killed" if shard in killed_shards else "surviving"
        late = lateness(s)
        if late is None:
            outcome = "lost"
            if where == "surviving" and s.v.sid not in restored:
                lost_surviving.append(s.v.sid)
        else:
            outcome = "late" if late > LATE_S else "on_time"
            late_s.append(late)
        outcomes[where][outcome] += 1
        if s.armed_s + DELAY_S >= t_kill:
            outcomes[where]["due_after_kill"] += 1
        oids = [f.get("oid") for _, f in s.shows if f.get("rule") == "later"]
        if len(oids) > 1:
            outcomes[where]["twice" if len(set(oids)) == 1 else "twice_other_oid"] += 1
        if late is not None:
            session_where = "killed" if session_master[s.v.sid] == victim else "surviving"
            spread.setdefault(f"shard {where}, session {session_where}", []).append(late)
    lost_why = Counter()
    lost = [s for s in armers if lateness(s) is None]
    for s in lost:
        lines = [e for e in states[s.v.sid].get("log", []) if e.get("kind") == "timer"]
        lost_why[lines[0].get("outcome") if lines else "no outcome recorded"] += 1
    queued = await asyncio.to_thread(where_queued, cluster.url, [s.v.sid for s in lost]) if lost else Counter()
    tracebacks = server.output().count("Traceback")

    def summary(c: Counter) -> str:
        return (f"on_time={c['on_time']} late={c['late']} lost={c['lost']} (due after kill {c['due_after_kill']})"
                + (f" twice={c['twice']}" if c["twice"] else "")
                + (f" twice_other_oid={c['twice_other_oid']}" if c["twice_other_oid"] else ""))

    print()
    print(f"FAILOVER: sessions={VISITORS} on_killed_master={len(on_victim)} (per master {dict(per_master)}) "
          f"killed={victim} (holds {', '.join(holds) or 'no shared key'}; timer shards {sorted(killed_shards)}) | "
          f"promotion={promoted_s:.2f}s | all served again={back_s[-1]:.2f}s after kill "
          f"(median {statistics.median(back_s):.2f}s, p90 {back_s[int(0.9 * len(back_s))]:.2f}s) | "
          f"server_error: visitors' tally={len(frames_errors)} frames ({batch_errors} batches not stored, "
          f"{len(frames_errors) - batch_errors} without seq), metric={errors_metric:.0f} "
          f"(+{errors_metric - errors_before:.0f} since kill), before kill={steady_errors}; "
          f"visitors hit={hit}, cycles failed={failed_cycles}, unanswered={unanswered} | "
          f"timers armed before kill={len(armers)}: killed shards {summary(outcomes['killed'])}, "
          f"surviving shards {summary(outcomes['surviving'])}; "
          f"max late={max(late_s, default=0):.2f}s, lost: last timeline line {dict(lost_why)}, in the queue "
          f"{dict(queued)} | "
          f"state lost (restored)={len(restored)}, killed-master sessions resumed same sid={resumed}, "
          f"new sid={renamed}, "
          f"hellos refused server_error={len(refused_hellos)} (of {len(set(refused_hellos))} visitors) | "
          f"server alive, tracebacks in log={tracebacks}, other frames={dict(others)}, closed={len(closed)}, "
          f"not served again={len(not_back)}, frames naming another sid={len(wrong)}")
    print(f"   arrivals {arrived_in_s:.1f}s, cycles served before kill={served_before}, "
          f"all served check at {all_back_s:.1f}s, timers settled at {timers_waited_s:.1f}s after kill, "
          f"late probe answers={sum(s.late_probes for s in streamers)}, server log {server.log_path}")
    hit_victim = sum(1 for s in on_victim if any(t >= t_kill for t, _ in s.server_errors))
    back_victim = max((back[s.v.sid] - t_kill for s in on_victim if back[s.v.sid]), default=float("nan"))
    back_others = max((back[s.v.sid] - t_kill for s in streamers if s not in on_victim and back[s.v.sid]),
                      default=float("nan"))
    print(f"   hit: {hit_victim} of {len(on_victim)} on the killed master, {hit - hit_victim} of "
          f"{VISITORS - len(on_victim)} elsewhere; served again: killed master's max {back_victim:.2f}s, "
          f"others' max {back_others:.2f}s")
    for group, values in sorted(spread.items()):
        values.sort()
        print(f"   timer lateness, {group}: n={len(values)} min={values[0]:.2f}s "
              f"median={statistics.median(values):.2f}s "
              f"max={values[-1]:.2f}s over 10 s={sum(1 for x in values if x > 10)} "
              f"over 40 s={sum(1 for x in values if x > 40)}")

    assert not wrong, f"frames naming another session: {wrong[:5]}"
    assert not not_back, (f"{len(not_back)} of {VISITORS} visitors not served again {RECOVER_WITHIN_S:.0f} s after "
                          f"the kill (closed: {closed[:5]}); server log:\n{server.output()[-3000:]}")
    assert not strangers, f"sessions stored under another (or no) visitor: {strangers[:5]}"
    assert not bad_welcomes, \
        f"a hello naming its session was welcomed under an empty or another's id: {bad_welcomes[:5]}"
    assert not never_welcomed, f"{len(never_welcomed)} hellos after the failover never welcomed: {never_welcomed[:3]}"
    assert not lost_surviving, (f"{len(lost_surviving)} timers on surviving shards never fired within "
                                f"{TIMERS_WITHIN_S:.0f} s of the kill: {lost_surviving[:5]}")
    for v in again:
        await v.leave()  # type: ignore[union-attr]
    for s in streamers:
        if s not in on_victim:
            await s.v.leave()
    await asyncio.gather(*readers, return_exceptions=True)
