"""`atelier serve`: run the service under uvicorn (with uvloop and httptools from uvicorn[standard])."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from app.config import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier inference service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=int, default=settings.port)
    serve.add_argument("--workers", type=int, default=settings.workers,
                       help="worker processes; each loads its own sessions after the fork")
    args = parser.parse_args(argv)

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        import os

        # Workers read Settings from the environment after the fork; pass the CLI's choice down that way.
        os.environ["ATELIER_WORKERS"] = str(args.workers)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
