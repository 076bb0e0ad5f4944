"""The `kairos` command: serve, check."""

from __future__ import annotations

import argparse
import logging
import sys

from . import wire
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kairos", description="Real-time in-browser personalization server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--engine", choices=["memory", "redis"], help="session store (default: memory)")
    serve.add_argument("--redis-url", help="Redis URL for --engine redis (default: redis://127.0.0.1:6379/0)")
    serve.add_argument("--rules", help="rules file (YAML); watched, and reloaded when it changes")
    serve.add_argument("--admin-token", help="bearer token for /admin/* (better: KAIROS_ADMIN_TOKEN; "
                       "default: /admin/* answers loopback clients only)")
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: 8000)")
    serve.add_argument("--allowed-origin", action="append", dest="allowed_origins",
                       help="accept websockets only from this origin (repeatable; default: any)")
    serve.add_argument("--no-demo", action="store_false", dest="demo", default=None, help="do not serve the demo store")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--no-timers", action="store_false", dest="timers", default=None,
                       help="leave delayed rules' timers to other processes on the same Redis")
    serve.add_argument("--delay-scale", type=float,
                       help="multiply rule delays and the idle threshold (tests, demos; default 1)")

    check = sub.add_parser("check", help="validate a rules file")
    check.add_argument("file")

    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args.file)
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    if flags.get("allowed_origins"):
        flags["allowed_origins"] = tuple(flags["allowed_origins"])
    return _serve(Settings.load(**flags))


def _check(path: str) -> int:
    from .render import Renderer
    from .rules import RulesError, load_rules

    from .rules.describe import describe

    settings = Settings.load()
    try:
        rules = load_rules(path, Renderer(settings.templates_dir / "overlays").names())
    except RulesError as exc:
        # One line per problem: file:line: place: reason.
        print(exc, file=sys.stderr)
        return 1
    n = len(rules.rules)
    print(f"{path}: {n} {'rule' if n == 1 else 'rules'} OK")
    for rule in rules.rules:
        print(f"  {rule.id}: {describe(rule, rules.page_types)}")
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from .app import create_app
    from .rules import RulesError

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except RulesError as exc:
        print(f"kairos: refusing to start, the rules file is invalid:\n{exc}", file=sys.stderr)
        return 2
    base = f"http://{settings.host}:{settings.port}"
    print(f"Kairos is running ({settings.engine} engine, rules: {settings.rules or 'none'})", flush=True)
    if settings.demo:
        print(f"  demo store: {base}/demo/", flush=True)
    print(f"  dashboard:  {base}/dashboard", flush=True)
    print(f"  snippet:    <script src=\"{base}/k.js\" data-site=\"demo\" async></script>", flush=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        # Frames are small msgpack; deflate costs 64-316 KiB per connection
        # (websockets docs, uvicorn issue 1862) for nothing.
        ws_per_message_deflate=False,
        ws_max_size=wire.HARD_MAX_FRAME_BYTES,
        # The access log would write every visitor's IP address to disk.
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
