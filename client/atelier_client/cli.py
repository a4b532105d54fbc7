"""The batch commands: `atelier detect|embed PHOTO...`, `atelier verify A B...`, `atelier stylize PATH... --style ID
--out DIR`, on the client (app/cli.py adds them beside `serve` and `healthcheck`; `python -m atelier_client` runs
them where only the client is installed).

Inputs are files and folders (searched recursively for image extensions). Requests run concurrently, at most
`--concurrency` at a time; stdout gets one JSON line per input, in input order (the API's answer plus the input's
`path`, or its `error`), or with `--table` one table at the end. When any input failed, the exit status is 1 and
stderr says which and why. `--local` runs the service in this process (app.main.create_app behind
httpx.ASGITransport, models loaded as `atelier serve` would), so no server is needed; it needs the server's
package, imported only then."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from atelier_client.client import API_KEY_ENV, DEFAULT_URL, URL_ENV, AsyncClient, Retry
from atelier_client.errors import AtelierError, ConnectionFailed

COMMANDS = ("detect", "embed", "verify", "stylize")
# The formats the service decodes (README, API): what a folder is searched for. Files named one by one are sent
# whatever their name.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
FORMAT_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
LOCAL_URL = "http://atelier.local"


@dataclass(frozen=True)
class Item:
    path: Path  # as given or found, for the output
    relative: Path  # below the folder it was found in (its name when given directly): for stylize's output names
    problem: str | None = None  # why it cannot be sent (missing file)


@dataclass
class Outcome:
    item: Item
    record: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def line(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": str(self.item.path), "error": self.error}
        return {"path": str(self.item.path), **(self.record or {})}


def expand(paths: Sequence[str]) -> list[Item]:
    """Files as given, folders searched recursively (sorted) for image extensions; a missing path is an item
    that fails, so that the summary names it."""
    items: list[Item] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            items.extend(Item(p, p.relative_to(path)) for p in found)
        elif path.is_file():
            items.append(Item(path, Path(path.name)))
        else:
            items.append(Item(path, Path(path.name), problem="no such file or folder"))
    return items


def error_fields(error: BaseException) -> dict[str, Any]:
    if isinstance(error, AtelierError):
        return {"code": error.code, "status": error.status, "message": error.message,
                "request_id": error.request_id}
    if isinstance(error, OSError):
        return {"code": "FILE_ERROR", "status": 0, "message": f"{error.strerror or error}", "request_id": None}
    return {"code": "CLIENT_ERROR", "status": 0, "message": f"{type(error).__name__}: {error}", "request_id": None}


def thresholds(value: str) -> tuple[float, float, float]:
    parts = [float(p) for p in value.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("three comma-separated numbers: P-Net, R-Net, O-Net")
    return parts[0], parts[1], parts[2]


def add_commands(commands: Any) -> None:
    """Add the batch commands to an argparse sub-parser set (app/cli.py's, or this module's own)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get(URL_ENV, DEFAULT_URL),
                        help=f"the server (default ${URL_ENV}, else {DEFAULT_URL})")
    common.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"sent as X-API-Key (default ${API_KEY_ENV})")
    common.add_argument("--local", action="store_true",
                        help="run the service in this process instead (needs the server package; reads the "
                        "same ATELIER_* settings as `atelier serve`)")
    common.add_argument("--concurrency", type=int, default=4, help="requests at once (default 4)")
    common.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    common.add_argument("--retries", type=int, default=3,
                        help="retries per request on 503/429 with Retry-After and on connection errors (default 3)")
    common.add_argument("--table", action="store_true", help="print a table instead of JSON lines")
    common.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")

    faces = argparse.ArgumentParser(add_help=False)
    faces.add_argument("--min-face-size", type=int)
    faces.add_argument("--thresholds", type=thresholds, help="P-Net,R-Net,O-Net, e.g. 0.6,0.7,0.7")
    faces.add_argument("--scale-factor", type=float)
    faces.add_argument("--max-faces", type=int)

    detect = commands.add_parser("detect", parents=[common, faces], help="find faces in photos (JSON per photo)")
    detect.add_argument("paths", nargs="+", metavar="PHOTO", help="image files or folders")
    embed = commands.add_parser("embed", parents=[common, faces], help="embed the faces of photos")
    embed.add_argument("paths", nargs="+", metavar="PHOTO", help="image files or folders")
    verify = commands.add_parser("verify", parents=[common, faces],
                                 help="compare the face in A with the face in each B")
    verify.add_argument("reference", metavar="A", help="the reference image")
    verify.add_argument("paths", nargs="+", metavar="B", help="image files or folders to compare with A")
    verify.add_argument("--threshold", type=float)
    verify.add_argument("--face", choices=["largest", "best_match"])
    stylize = commands.add_parser("stylize", parents=[common], help="paint photos in a style, into --out")
    stylize.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    stylize.add_argument("--out", required=True, type=Path, help="folder for the results (folders' structure kept)")
    stylize.add_argument("--style", help="a style id or name (`GET /v1/styles`), or a mix such as 3:0.7,11:0.3")
    stylize.add_argument("--style-image", type=Path, help="paint in the style of this image instead")
    stylize.add_argument("--strength", type=float)
    stylize.add_argument("--preserve-color", action="store_true", default=None)
    stylize.add_argument("--max-side", type=int)
    stylize.add_argument("--format", choices=sorted(FORMAT_EXTENSIONS), default="png")
    stylize.add_argument("--quality", type=int)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atelier_client", description="Atelier batch client")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if args.command == "stylize" and args.style is None and args.style_image is None:
        print("atelier stylize: give --style or --style-image", file=err)
        return 2
    if args.concurrency < 1:
        print("atelier: --concurrency must be at least 1", file=err)
        return 2
    items = expand(args.paths)
    if not items:
        print(f"atelier {args.command}: no images found in {' '.join(args.paths)}", file=err)
        return 2
    outcomes = asyncio.run(_run(args, items, out, err))
    if args.table:
        print_table(args.command, outcomes, out)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        print(f"atelier {args.command}: {len(failed)} of {len(outcomes)} inputs failed:", file=err)
        for outcome in failed:
            e = outcome.error or {}
            request = f", request {e['request_id']}" if e.get("request_id") else ""
            print(f"  {outcome.item.path}: {e.get('code')} ({e.get('status')}{request}): {e.get('message')}",
                  file=err)
        return 1
    return 0


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[AsyncClient]:
    retry = Retry(attempts=max(1, args.retries + 1))
    if not args.local:
        async with AsyncClient(args.url, api_key=args.api_key or "", timeout=args.timeout, retry=retry) as client:
            yield client
        return
    try:  # the server's package, only for --local (by name: this package type-checks without it)
        server = importlib.import_module("app.main")
    except ImportError as error:
        raise SystemExit(f"atelier --local needs the server package (pip install atelier[cpu]): {error}") from None
    app = server.create_app()  # Settings from ATELIER_* as for `atelier serve`
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), timeout=args.timeout) as http:
        yield AsyncClient(LOCAL_URL, api_key=args.api_key or "", timeout=args.timeout, retry=retry,
                          http_client=http)


async def _run(args: argparse.Namespace, items: list[Item], out: TextIO, err: TextIO) -> list[Outcome]:
    async with open_client(args) as client:
        work = _work(args, client, items)
        unreachable: dict[str, Any] | None = None
        if not args.local:
            try:  # once, so that a server that is not there fails every input at once, not after its retries
                await client.health()
            except ConnectionFailed as error:
                unreachable = error_fields(error)
        gate = asyncio.Semaphore(args.concurrency)
        bar = _progress_bar(len(items), args.command, args.progress, err)

        async def one(item: Item) -> Outcome:
            async with gate:
                try:
                    if unreachable is not None:
                        return Outcome(item, error=unreachable)
                    if item.problem is not None:
                        raise FileNotFoundError(2, item.problem)
                    return Outcome(item, record=await work(item))
                except (AtelierError, OSError) as error:
                    return Outcome(item, error=error_fields(error))
                finally:
                    if bar is not None:
                        bar.update(1)

        tasks = [asyncio.create_task(one(item)) for item in items]
        outcomes = []
        try:
            for task in tasks:  # in input order, each as soon as it and those before it are done
                outcome = await task
                outcomes.append(outcome)
                if not args.table:
                    out.write(json.dumps(outcome.line()) + "\n")
                    out.flush()
        finally:
            if bar is not None:
                bar.close()
        return outcomes


def _progress_bar(total: int, command: str, wanted: bool | None, err: TextIO) -> Any:
    if wanted is False or (wanted is None and not err.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # only where the client was installed alone, without its `cli` extra
        return None
    return tqdm(total=total, desc=command, unit="image", file=err, leave=False)


def _work(args: argparse.Namespace, client: AsyncClient,
          items: list[Item]) -> Callable[[Item], Awaitable[dict[str, Any]]]:
    detection = {"min_face_size": getattr(args, "min_face_size", None), "thresholds": getattr(args, "thresholds", None),
                 "scale_factor": getattr(args, "scale_factor", None), "max_faces": getattr(args, "max_faces", None)}
    if args.command == "detect":
        async def detect(item: Item) -> dict[str, Any]:
            return dataclasses.asdict(await client.detect(item.path, **detection))
        return detect
    if args.command == "embed":
        async def embed(item: Item) -> dict[str, Any]:
            return dataclasses.asdict(await client.embed(item.path, **detection))
        return embed
    if args.command == "verify":
        reference = Path(args.reference).read_bytes()  # once, not per comparison

        async def verify(item: Item) -> dict[str, Any]:
            result = await client.verify(reference, item.path, threshold=args.threshold, face=args.face,
                                         **detection)
            return {"reference": args.reference, **dataclasses.asdict(result)}
        return verify
    return _stylize_work(args, client, items)


def output_paths(items: list[Item], out_dir: Path, suffix: str) -> dict[Item, Path]:
    """Each input's result file: its path below its folder, with the format's suffix. photo.jpg and photo.png of
    one folder would both become photo.png: the later one keeps its own suffix too (photo.png.png)."""
    targets: dict[Item, Path] = {}
    taken: set[Path] = set()
    for item in items:
        path = out_dir / item.relative.with_suffix(suffix)
        if path in taken:
            path = out_dir / item.relative.with_name(item.relative.name + suffix)
        taken.add(path)
        targets[item] = path
    return targets


def _stylize_work(args: argparse.Namespace, client: AsyncClient,
                  items: list[Item]) -> Callable[[Item], Awaitable[dict[str, Any]]]:
    style_image = args.style_image.read_bytes() if args.style_image is not None else None
    targets = output_paths(items, args.out, FORMAT_EXTENSIONS[args.format])

    async def stylize(item: Item) -> dict[str, Any]:
        path = targets[item]
        result = await client.stylize(item.path, args.style, style_image=style_image, strength=args.strength,
                                      preserve_color=args.preserve_color, max_side=args.max_side,
                                      format=args.format, quality=args.quality)
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path)
        return {"output": str(path), "style": result.style, "media_type": result.media_type,
                "bytes": len(result.content), "timings_ms": result.timings_ms, "request_id": result.request_id}
    return stylize


Column = tuple[str, Callable[[dict[str, Any]], str]]


def _best_score(record: dict[str, Any]) -> str:
    return f"{record['faces'][0]['score']:.3f}" if record["faces"] else "-"


TABLE_COLUMNS: dict[str, list[Column]] = {
    "detect": [("faces", lambda r: str(len(r["faces"]))), ("best score", _best_score),
               ("size", lambda r: f"{r['width']}x{r['height']}"),
               ("ms", lambda r: f"{r['timings_ms'].get('total', 0):.0f}")],
    "embed": [("faces", lambda r: str(len(r["faces"]))), ("best score", _best_score),
              ("dimensions", lambda r: str(r["dimensions"])),
              ("ms", lambda r: f"{r['timings_ms'].get('total', 0):.0f}")],
    "verify": [("reference", lambda r: str(r["reference"])), ("similarity", lambda r: f"{r['similarity']:.3f}"),
               ("threshold", lambda r: f"{r['threshold']:.3f}"), ("verified", lambda r: "yes" if r["verified"]
                                                                   else "no")],
    "stylize": [("output", lambda r: str(r["output"])), ("style", lambda r: str(r["style"])),
                ("bytes", lambda r: str(r["bytes"])), ("ms", lambda r: f"{r['timings_ms'].get('total', 0):.0f}")],
}


def print_table(command: str, outcomes: list[Outcome], out: TextIO) -> None:
    columns = TABLE_COLUMNS[command]
    any_failed = any(o.error is not None for o in outcomes)
    header = ["path", *(name for name, _ in columns), *(["error"] if any_failed else [])]
    rows = []
    for outcome in outcomes:
        if outcome.error is not None:
            cells = ["-"] * len(columns) + [f"{outcome.error['code']}: {outcome.error['message']}"]
        else:
            cells = [cell(outcome.record or {}) for _, cell in columns] + ([""] if any_failed else [])
        rows.append([str(outcome.item.path), *cells])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
