"""The `kairos` command: serve, check, train, predict, explain, export-sessions, experiments."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from . import push, wire
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kairos", description="Real-time in-browser personalization server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--engine", choices=["memory", "redis"], help="session store (default: memory)")
    serve.add_argument("--redis-url", help="Redis URL for --engine redis (default: redis://127.0.0.1:6379/0; a "
                       "Redis Cluster: redis+cluster://HOST:PORT[,HOST:PORT...])")
    serve.add_argument("--redis-cluster", metavar="HOST:PORT[,...]",
                       help="use this Redis Cluster (some of its nodes; the rest are found): the Redis engine on "
                       "redis+cluster://HOST:PORT[,...] (docs/scaling.md)")
    serve.add_argument("--rules", help="rules file (YAML); watched, and reloaded when it changes")
    serve.add_argument("--admin-token", help="staff secret: the dashboard login and the bearer token for /api, /admin "
                       "(better: KAIROS_ADMIN_TOKEN; default: generated once into STATE_DIR/admin-token)")
    serve.add_argument("--state-dir", help="where the server keeps the admin token it generates (default: .kairos)")
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: 8000)")
    serve.add_argument("--allowed-origin", action="append", dest="allowed_origins",
                       help="accept websockets only from this origin (repeatable; default: any)")
    serve.add_argument("--no-demo", action="store_false", dest="demo", default=None, help="do not serve the demo store")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--send-timeout", type=float, dest="send_timeout_s", metavar="SECONDS",
                       help="release a client whose socket has not taken a frame for this long: close 1013, "
                       "then abort the socket (default 10; 0: none)")
    serve.add_argument("--geoip-db", help="MaxMind GeoIP2/GeoLite2 City or Country database (.mmdb)")
    serve.add_argument("--no-timers", action="store_false", dest="timers", default=None,
                       help="leave delayed rules' timers to other processes on the same Redis")
    serve.add_argument("--reconnect-grace", type=float, dest="reconnect_grace_s", metavar="SECONDS",
                       help="how long a due delayed nudge waits for its visitor's page to reconnect before its "
                       "rule's offline decides (default 5)")
    serve.add_argument("--delay-scale", type=float,
                       help="multiply rule delays and the idle threshold (tests, demos; default 1)")
    serve.add_argument("--metrics-port", type=int,
                       help="also listen here, serving /metrics alone and without a token (default: none; /metrics "
                       "on the main address needs the admin token)")
    serve.add_argument("--metrics-host", help="address for --metrics-port (default: 127.0.0.1; keep it private)")
    serve.add_argument("--workers", type=_workers, metavar="N|auto",
                       help="processes sharing the port, each a whole Kairos (auto: one per core; more than one "
                       "needs --engine redis; default 1)")

    check = sub.add_parser("check", help="validate a rules file")
    check.add_argument("file")

    train = sub.add_parser("train", help="fit a purchase-intent model on a CSV of sessions (needs kairos[train])")
    train.add_argument("csv", help="sessions, one a row, under a header row")
    train.add_argument("--label", required=True, help="the column that says whether a session bought (TRUE/FALSE, yes/no, 1/0)")
    train.add_argument("-o", "--output", metavar="MODEL.json", help="write the model file here")
    train.add_argument("--cv", type=int, default=0, metavar="K", help="first report K-fold cross-validated ROC AUC, PR AUC and F1")
    train.add_argument("--seed", type=int, default=0, help="seed of the folds and the trees (default 0)")
    train.add_argument("--ignore", action="append", default=[], metavar="COLUMN", help="leave this column out (repeatable)")

    predict = sub.add_parser("predict", help="score every session of a CSV with a model file")
    predict.add_argument("model", help="a model file from kairos train")
    predict.add_argument("csv", help="sessions, one a row, under a header row")

    explain = sub.add_parser("explain", help="why a live session's intent scores are what they are")
    explain.add_argument("sid", help="the session id (the dashboard shows it)")
    explain.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default: %(default)s)")
    explain.add_argument("--token", help="admin token (default: KAIROS_ADMIN_TOKEN, else STATE_DIR/admin-token)")

    export = sub.add_parser("export-sessions", help="write ended sessions' features and outcome as a CSV for kairos train")
    export.add_argument("-o", "--output", metavar="SESSIONS.csv", help="write here (default: standard output)")
    export.add_argument("--all", action="store_true", help="include sessions that may still go on (their outcome may change)")
    export.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default: %(default)s)")
    export.add_argument("--token", help="admin token (default: KAIROS_ADMIN_TOKEN, else STATE_DIR/admin-token)")

    experiments = sub.add_parser("experiments", help="the running server's experiments: each arm's numbers and the verdict")
    experiments.add_argument("--json", action="store_true", help="print the reports as JSON, as /api/experiments gives them")
    experiments.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default: %(default)s)")
    experiments.add_argument("--token", help="admin token (default: KAIROS_ADMIN_TOKEN, else STATE_DIR/admin-token)")

    args = parser.parse_args(argv)
    if args.command == "experiments":
        return _experiments(args)
    if args.command == "explain":
        return _explain(args)
    if args.command == "export-sessions":
        return _export_sessions(args)
    if args.command == "check":
        return _check(args.file)
    if args.command == "train":
        return _train(args)
    if args.command == "predict":
        return _predict(args.model, args.csv)
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    cluster = flags.pop("redis_cluster", None)
    if cluster:
        if flags.get("redis_url") or flags.get("engine") == "memory":
            print("kairos: --redis-cluster names the Redis to use; leave out --redis-url and --engine memory",
                  file=sys.stderr)
            return 2
        flags["redis_url"], flags["engine"] = f"redis+cluster://{cluster}", "redis"
    if flags.get("allowed_origins"):
        flags["allowed_origins"] = tuple(flags["allowed_origins"])
    return _serve(Settings.load(**flags))


def _check(path: str) -> int:
    from .render import Renderer
    from .rules import RulesError, load_rules

    from .rules.describe import describe, window_words

    settings = Settings.load()
    try:
        renderer = Renderer(settings.templates_dir / "overlays")
        rules = load_rules(path, renderer.names(), renderer.problem)
    except RulesError as exc:
        # One line per problem: file:line: place: reason.
        print(exc, file=sys.stderr)
        return 1
    n = len(rules.rules)
    print(f"{path}: {n} {'rule' if n == 1 else 'rules'} OK")
    if rules.caps.per_visitor:
        print(f"  every rule together: {window_words(rules.caps.per_visitor, 'to one visitor')}")
    if rules.holdout:
        print(f"  holdout: {rules.holdout * 100:g}% of visitors are shown no nudge, to measure what the rules earn "
              "together (experiment *)")
    if rules.track:
        words = {True: "on", False: "off"}
        print("  tracking: " + ", ".join(f"{k} {words.get(v, v) if isinstance(v, bool) else v}" for k, v in rules.track.items()))
    for name, m in rules.models.items():
        cv = (m.model.training.get("cv") or {}).get("roc_auc") or {}
        trained = f", cross-validated ROC AUC {cv['mean']:.3f}" if "mean" in cv else ""
        print(f"  score {name}: model {m.path} ({len(m.model.trees)} trees over {len(m.columns_read())} session features{trained})")
        missing = m.columns_missing()
        if missing:
            print(f"    note: a session has no {', '.join(missing)}: the model always reads them as missing")
    for score in rules.scores:
        weights = ", ".join(f"{signal} {w:+g}" for signal, w in score.weights.items())
        s = score.half_life_ms / 1000
        half_life = f"{s / 3600:g} h" if s % 3600 == 0 else f"{s / 60:g} min" if s % 60 == 0 else f"{s:g} s"
        print(f"  score {score.name}: bias {score.bias:+g}, half-life {half_life}; {weights}")
    for rule in rules.rules:
        print(f"  {rule.id}: {describe(rule, rules.page_types)}")
    return 0


def _workers(value: str) -> int:
    """--workers: a count of processes, or `auto` (0: one per core)."""
    if value.strip().lower() == "auto":
        return 0
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got {value!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"expected 1 to 256 processes (or auto), got {n}")
    return n


class _StaffError(Exception):
    """A staff request that failed; the message is for the command's user."""


def _staff_get(url: str, path: str, token: str | None, not_found: str = "not found") -> bytes:
    """GET a staff path of a running server with the admin token (flag, KAIROS_ADMIN_TOKEN or the state file)."""
    import urllib.error
    import urllib.request

    settings = Settings.load()
    token = token or settings.admin_token
    token_file = Path(settings.state_dir) / "admin-token"
    if not token and token_file.is_file():
        token = token_file.read_text().strip()
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        reason = {401: "the admin token was refused (--token, or KAIROS_ADMIN_TOKEN)", 404: not_found}
        raise _StaffError(reason.get(exc.code, f"HTTP {exc.code}")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _StaffError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def _export_sessions(args: argparse.Namespace) -> int:
    """Write the server's kept session rows as CSV: the input of `kairos train --label purchased`."""
    try:
        body = _staff_get(args.url, "/api/export/sessions.csv" + ("?all=1" if args.all else ""), args.token,
                          "this server has no session export (an older Kairos?)")
    except _StaffError as exc:
        print(f"kairos export-sessions: {exc}", file=sys.stderr)
        return 1
    text = body.decode("utf-8")
    n = max(0, len(text.splitlines()) - 1)
    if not n:
        # A header alone would only make `kairos train` fail later, further from the reason.
        why = ("the server keeps no session yet: a session is kept when a page load ends "
               "(and none when the server runs with KAIROS_ARCHIVE_TTL_S=0)") if args.all else \
              ("no session has ended yet: a session ends once its visitor has been idle for the session "
               "timeout (30 minutes unless KAIROS_SESSION_TTL_S says otherwise); --all also exports the "
               "sessions that may still go on")
        print(f"kairos export-sessions: nothing written, {why}", file=sys.stderr)
        return 1
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"kairos export-sessions: {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    purchased = sum(1 for line in text.splitlines()[1:] if line.endswith(",TRUE"))
    print(f"{n:,} sessions ({purchased:,} with an order){' written to ' + args.output if args.output else ''}",
          file=sys.stderr)
    if n and not purchased:
        print("  none ordered: kairos train needs sessions with and without an order", file=sys.stderr)
    return 0


def _experiments(args: argparse.Namespace) -> int:
    """Print the running server's experiments as a table (the Experiments page's numbers), or as JSON."""
    import json

    from .experiments.report import table

    try:
        body = json.loads(_staff_get(args.url, "/api/experiments", args.token,
                                     "this server has no experiments API (an older Kairos?)"))
    except _StaffError as exc:
        print(f"kairos experiments: {exc}", file=sys.stderr)
        return 1
    reports = body.get("experiments") or []
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        sys.stdout.write(table(reports))
    return 0


def _explain(args: argparse.Namespace) -> int:
    """Print each score of a session now, and the signals that make it, and its timers, from the server's /api."""
    import json

    try:
        state = json.loads(_staff_get(args.url, f"/api/sessions/{args.sid}", args.token, "no such session"))
    except _StaffError as exc:
        print(f"kairos explain: {args.sid}: {exc}", file=sys.stderr)
        return 1
    print(f"session {state['sid']}: {state.get('pages', 0)} pages, now on {state.get('path') or '?'}")
    scores = state.get("scores") or {}
    if not scores:
        print("  no intent scores (the rules in force declare none under 'scores:')")
    for name, score in scores.items():
        if "model" in score:  # a trained model's score: its baseline and the features that moved it most
            rest = f" {score['rest']:+.3f} rest" if score.get("rest") else ""
            print(f"  {name} {score['value']:.3f}  = logistic({score['bias']:+.3f} baseline"
                  + "".join(f" {v:+.3f}" for _, v, *_ in score["top"]) + f"{rest})  model {score['model']}")
            for column, value, *seen in score["top"]:
                print(f"    {value:+.3f}  {column}" + (f" = {'missing' if seen[0] is None else seen[0]}" if seen else ""))
            continue
        print(f"  {name} {score['value']:.3f}  = logistic({score['bias']:+.3f} bias"
              + "".join(f" {v:+.3f}" for _, v in score["top"]) + ")")
        for signal, value in score["top"]:
            print(f"    {value:+.3f}  {signal}")
    _print_timers(state.get("log") or [])
    return 0


def _print_timers(log: list[dict]) -> None:
    """The delayed rules' timers of the session's timeline (the newest entries it keeps), oldest first."""
    import time

    from .rules.delayed import timeline_words

    lines = [e for e in reversed(log) if e.get("kind") == "timer"]
    if not lines:
        return
    print("  timers:")
    for e in lines:
        print(f"    {time.strftime('%H:%M:%S', time.gmtime(e['ts'] / 1000))}  {timeline_words(e)}")


def _train(args: argparse.Namespace) -> int:
    try:
        from .intent import train
    except ImportError as exc:
        print(f"kairos train: needs the train extra ({exc.name} is missing): pip install 'kairos[train]'", file=sys.stderr)
        return 2
    from .intent import save

    try:
        model = train.train(train.read_table(args.csv), args.label, cv=args.cv, seed=args.seed, ignore=args.ignore)
        if args.output:
            save(model, args.output)
    except (train.TrainError, OSError) as exc:
        print(f"kairos train: {exc}", file=sys.stderr)
        return 1
    where = f"written to {args.output}" if args.output else "not written (no -o)"
    print(f"model: {len(model.trees)} trees over {len(model.inputs)} inputs, {where}")
    return 0


def _predict(model_path: str, csv_path: str) -> int:
    import csv

    from .intent import ModelError, load

    try:
        model = load(model_path)
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            absent = [c.column for c in model.features if c.column not in (reader.fieldnames or [])]
            if absent:
                print(f"kairos predict: {csv_path} has no {', '.join(absent)}: scored as missing", file=sys.stderr)
            print("purchase_intent")
            for row in reader:
                print(f"{model.predict(row):.6f}")
    except ModelError as exc:
        print(f"kairos predict: {exc}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"kairos predict: {csv_path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    return 0


_CLIENT_ADDRESS = re.compile(r"^\[?[0-9a-fA-F.:]+\]?:\d+$")


class NoClientAddress(logging.Filter):
    """Redact visitors' addresses from uvicorn's lines.

    With the access log off, uvicorn still logs every websocket it accepts as
    '<ip>:<port> - "WebSocket /ws" [accepted]'; Kairos promises not to keep IPs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple("-" if isinstance(a, str) and _CLIENT_ADDRESS.match(a) else a for a in record.args)
        return True


# A path's query string, wherever a log line quotes one: "GET /healthz?x=1", "WebSocket /ws?token=…".
_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


def redact_queries(text: str) -> str:
    """`text` with every URL path's query string replaced by `?…`."""
    return _QUERY.sub(r"\1?…", text)


class NoQueryString(logging.Filter):
    """Redact query strings from uvicorn's lines.

    A query can carry what must not reach a log file: a token a client put in
    a websocket URL, a visitor's email in a page's URL. The path stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact_queries(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = redact_queries(record.msg)
        return True


class ClientFaultOneLine(logging.Filter):
    """Make uvicorn's line for a text message of invalid UTF-8 one line, without a traceback.

    A client chooses to send it, and uvicorn logs it as an ERROR with the
    UnicodeDecodeError's traceback (websockets_sansio_impl; the socket is closed
    with 1007 either way): any page could fill the log with them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Invalid UTF-8 sequence received from client." and record.exc_info:
            record.msg = "client sent a text message of invalid UTF-8: closed with 1007"
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _log_config() -> dict:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["no_client_address"] = {"()": NoClientAddress}
    config["filters"]["no_query_string"] = {"()": NoQueryString}
    config["filters"]["client_fault_one_line"] = {"()": ClientFaultOneLine}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).extend(["no_client_address", "no_query_string", "client_fault_one_line"])
    return config


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, as uvicorn binds its own (it listens once the server starts)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _serve(settings: Settings) -> int:
    import uvicorn

    from . import serving
    from .rules import RulesError

    serving.configure_logging(settings)
    login = "with the admin token you set (KAIROS_ADMIN_TOKEN or --admin-token)"
    if not settings.admin_token:
        from .staff import TOKEN_FILE, TokenFileError, stored_admin_token

        token_file = settings.state_dir / TOKEN_FILE
        try:
            token, created = stored_admin_token(settings.state_dir)
        except (TokenFileError, OSError) as exc:
            print(f"kairos: refusing to start without an admin token: {exc}", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, admin_token=token)
        # The token itself is shown once, when it is made; later runs say where it is.
        login = f"with the admin token {token} (new, kept in {token_file})" if created else \
            f"with the admin token in {token_file}"
    if not settings.identify_secret:
        # Read once here and passed down; processes sharing a Redis share the state
        # directory or KAIROS_IDENTIFY_SECRET, so one customer hashes alike on each.
        from .secrets_file import SecretFileError, identify_secret

        try:
            secret, _ = identify_secret(settings.state_dir)
        except (SecretFileError, OSError) as exc:
            print(f"kairos: refusing to start without an identify secret: {exc}", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, identify_secret=secret)
    metrics_socket = None
    if settings.metrics_port:
        if settings.metrics_port == settings.port:
            print(f"kairos: --metrics-port must differ from --port ({settings.port}): the port tells the metrics "
                  "address apart", file=sys.stderr)
            return 2
        try:
            metrics_socket = _listen(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            print(f"kairos: cannot listen for metrics on {settings.metrics_host}:{settings.metrics_port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 2
    if settings.engine == "redis":
        from .engine.cluster import is_cluster_url, startup_nodes

        if is_cluster_url(settings.redis_url):
            try:
                startup_nodes(settings.redis_url)
            except ValueError as exc:
                print(f"kairos: {exc}", file=sys.stderr)
                return 2
    workers = settings.workers or os.cpu_count() or 1
    if workers > 1 and settings.engine != "redis":
        print(f"kairos: --workers {workers} needs --engine redis: the memory engine keeps sessions, caps and timers "
              "in one process, and a visitor's next page may reach another worker", file=sys.stderr)
        return 2
    if workers > 1 and metrics_socket is not None:
        metrics_socket.close()
        print(f"kairos: --metrics-port serves one process's metrics; with --workers {workers} each worker has its own: "
              "scrape /metrics on the main address (with the admin token), or run one `kairos serve` per port",
              file=sys.stderr)
        return 2
    if workers > 1:
        # Checked here, so a mistake is one message, not one from each worker.
        from .rules import load_rules
        from .render import Renderer

        if settings.rules is not None:
            try:
                renderer = Renderer(settings.templates_dir / "overlays")
                load_rules(settings.rules, renderer.names(), renderer.problem)
            except RulesError as exc:
                print(f"kairos: refusing to start, the rules file is invalid:\n{exc}", file=sys.stderr)
                return 2
        asgi_app: Any = functools.partial(serving.worker_app, settings)
    else:
        try:
            asgi_app = serving.build_app(settings)
        except RulesError as exc:
            print(f"kairos: refusing to start, the rules file is invalid:\n{exc}", file=sys.stderr)
            return 2
    base = f"http://{settings.host}:{settings.port}"
    print(f"Kairos is running ({settings.engine} engine" + (f", {workers} workers" if workers > 1 else "") + ")",
          flush=True)
    if settings.rules is not None:
        print(f"  rules:      {settings.rules} (Apply in the dashboard writes it)", flush=True)
    else:
        print("  rules:      none (rules put in force from the dashboard are kept in memory, lost at restart)", flush=True)
    if settings.demo:
        print(f"  demo store: {base}/demo/", flush=True)
    print(f"  dashboard:  {base}/dashboard", flush=True)
    print(f"  log in:     {login}", flush=True)
    print(f"  snippet:    <script src=\"{base}/k.js\" data-site=\"demo\" async></script>", flush=True)
    if metrics_socket is not None:
        print(f"  metrics:    http://{settings.metrics_host}:{settings.metrics_port}/metrics (no token: keep this "
              f"address private; {base}/metrics needs the admin token)", flush=True)
    else:
        print(f"  metrics:    {base}/metrics (the admin token as a bearer; or --metrics-port)", flush=True)
    config = uvicorn.Config(
        asgi_app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=push.http_protocol(),
        ws="websockets-sansio",
        # Frames are small msgpack; deflate costs 64-316 KiB per connection
        # (websockets docs, uvicorn issue 1862) for nothing.
        ws_per_message_deflate=False,
        ws_max_size=wire.HARD_MAX_FRAME_BYTES,
        # The access log would write every visitor's IP address to disk.
        access_log=False,
        log_config=_log_config(),
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        workers=workers,
        factory=workers > 1,
    )
    if workers > 1:
        with contextlib.suppress(KeyboardInterrupt):
            serving.run_workers(config)
        return 0
    server = serving.Server(config)
    # With a metrics address the server listens on two sockets; the app tells them
    # apart by port (kairos.scrape). Without one, uvicorn binds its own as usual.
    sockets = None if metrics_socket is None else [config.bind_socket(), metrics_socket]
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    return 0 if server.started else 3  # 3: uvicorn's own exit status for a failed start-up


if __name__ == "__main__":
    sys.exit(main())
