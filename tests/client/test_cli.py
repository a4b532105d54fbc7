"""The batch commands end to end: `atelier detect|verify|stylize` against a live server (in this process through
app.cli.main, and once as a subprocess), and `--local` with no server at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app.cli import main
from tests.client.conftest import API_KEY
from tests.conftest import REPO_ROOT
from tests.hardening.conftest import free_port


@pytest.fixture
def folder(tmp_path: Path, photos: dict[str, Path]) -> Path:
    """photos/obama.jpg, photos/broken.jpg (not an image), photos/more/obama2.jpg, photos/notes.txt (not searched)."""
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    shutil.copy(photos["obama.jpg"], root / "obama.jpg")
    shutil.copy(photos["obama2.jpg"], root / "more" / "obama2.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 this is no JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_detect_over_a_folder_with_a_bad_file(server_url: str, folder: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "detect", str(folder), "--url", server_url, "--api-key", API_KEY,
                         "--min-face-size", "40", "--concurrency", "2")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(line["path"]).relative_to(folder).as_posix() for line in lines] == [
        "broken.jpg", "more/obama2.jpg", "obama.jpg"]  # sorted, recursive, images only
    broken, second, first = lines
    assert broken["error"]["code"] == "INVALID_IMAGE" and broken["error"]["status"] == 422
    assert broken["error"]["request_id"]
    for line in (first, second):  # the API's answer, plus the path
        assert len(line["faces"]) == 1 and {"box", "score", "landmarks"} <= set(line["faces"][0])
        assert {"width", "height", "model", "timings_ms", "request_id"} <= set(line)
    assert code == 1
    assert "1 of 3 inputs failed" in err and "broken.jpg: INVALID_IMAGE (422" in err


def test_table(server_url: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "detect", str(folder), "--url", server_url, "--api-key", API_KEY, "--table",
                       "--min-face-size", "40")
    header, rule, *rows = out.splitlines()
    assert header.split()[:3] == ["path", "faces", "best"] and header.rstrip().endswith("error")
    assert set(rule.replace(" ", "")) == {"-"} and len(rows) == 3
    assert "INVALID_IMAGE" in rows[0] and rows[2].split()[1] == "1" and code == 1


def test_stylize_writes_every_result(server_url: str, folder: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "broken.jpg").unlink()
    out_dir = tmp_path / "painted"
    code, out, err = run(capsys, "stylize", str(folder), "--style", "19", "--out", str(out_dir), "--format", "jpeg",
                         "--max-side", "128", "--url", server_url, "--api-key", API_KEY)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()) == [
        "more/obama2.jpg", "obama.jpg"]
    for line in lines:
        source, result = Path(line["path"]), Path(line["output"])
        assert line["style"] == "19" and line["media_type"] == "image/jpeg" and line["bytes"] == result.stat().st_size
        assert Image.open(result).size == Image.open(source).size


def test_verify(server_url: str, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", str(photos["obama.jpg"]), str(photos["obama2.jpg"]), str(photos["biden.jpg"]),
                       "--url", server_url, "--api-key", API_KEY)
    same, other = (json.loads(line) for line in out.splitlines())
    assert code == 0 and same["verified"] and not other["verified"]
    assert same["reference"] == str(photos["obama.jpg"]) and other["path"] == str(photos["biden.jpg"])


def test_a_missing_key_and_a_missing_file_fail_by_input(server_url: str, photos: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "detect", str(photos["obama.jpg"]), str(tmp_path / "gone.jpg"), "--url", server_url,
                         "--api-key", "")
    unauthorized, gone = (json.loads(line)["error"]["code"] for line in out.splitlines())
    assert (unauthorized, gone, code) == ("UNAUTHORIZED", "FILE_ERROR", 1) and "2 of 2 inputs failed" in err


def test_no_server_fails_every_input_at_once(photos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "detect", str(photos["obama.jpg"]), str(photos["biden.jpg"]),
                         "--url", f"http://127.0.0.1:{free_port()}", "--retries", "0")
    assert code == 1 and [json.loads(line)["error"]["code"] for line in out.splitlines()] == ["CONNECTION_FAILED"] * 2
    assert "2 of 2 inputs failed" in err


def test_local_needs_no_server(photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ATELIER_API_KEYS", raising=False)
    monkeypatch.setenv("ATELIER_URL", f"http://127.0.0.1:{free_port()}")  # nothing there: must not be used
    code, out, err = run(capsys, "detect", "--local", str(photos["obama.jpg"]), "--min-face-size", "40", "--table")
    assert code == 0, err
    assert out.splitlines()[2].split()[1] == "1"


def test_the_atelier_command_reads_url_and_key_from_the_environment(server_url: str, photos: dict[str, Path]) -> None:
    environment = {**os.environ, "ATELIER_URL": server_url, "ATELIER_API_KEY": API_KEY,
                   "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "client"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "app.cli", "detect", str(photos["biden.jpg"])], cwd=REPO_ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["path"] == str(photos["biden.jpg"]) and json.loads(line)["faces"]
