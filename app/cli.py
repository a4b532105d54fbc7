"""`atelier serve`: run the service under uvicorn (with uvloop and httptools from uvicorn[standard]).

`atelier healthcheck`: exit 0 when this machine's server answers /healthz on the port its Settings name (what
the container images' HEALTHCHECK runs, so a changed ATELIER_PORT moves the check along with the server).

`atelier detect|embed|verify|stylize`: the batch commands of the client package (atelier_client/cli.py), against
a server URL or, with --local, in this process."""

from __future__ import annotations

import argparse
import logging.config
import urllib.error
import urllib.request

from app.config import get_settings
from app.logs import logging_config

try:
    from atelier_client import cli as batch
except ImportError:  # an environment installed from a checkout older than the client: serve and healthcheck stay
    batch = None  # type: ignore[assignment]
BATCH_COMMANDS = ("detect", "embed", "verify", "stylize")


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier inference service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=int, default=settings.port)
    serve.add_argument("--workers", type=int, default=settings.workers,
                       help="worker processes; each loads its own sessions after the fork")
    check = commands.add_parser("healthcheck", help="exit 0 if the local server answers /healthz")
    check.add_argument("--port", type=int, default=settings.port)
    check.add_argument("--timeout", type=float, default=3.0)
    if batch is not None:
        batch.add_commands(commands)
    else:
        for name in BATCH_COMMANDS:
            commands.add_parser(name, add_help=False)
    args = parser.parse_args(argv) if batch is not None else parser.parse_known_args(argv)[0]
    if args.command == "healthcheck":
        return healthcheck(args.port, args.timeout)
    if args.command in BATCH_COMMANDS:
        if batch is None:
            parser.exit(2, "atelier: the client package atelier_client is missing: pip install -e . again\n")
        return batch.run(args)

    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    if args.command == "serve":
        import os

        import uvicorn

        # Workers read Settings from the environment after the fork; pass the CLI's choice down that way.
        os.environ["ATELIER_WORKERS"] = str(args.workers)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            # uvicorn applies it again in each worker process, and routes its own loggers through it
            log_config=logging_config(settings.log_level, settings.log_format),
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
    return 0


def healthcheck(port: int, timeout_s: float) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
