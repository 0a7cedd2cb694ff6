"""``imgclf serve`` over real loopback HTTP: answers, refusals, limits and load.

The server is a real process (see conftest.py); requests are real HTTP with httpx.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imgclf import cli

Server = Any  # conftest.Server: url, max_files, max_upload_bytes, output()


def jpeg_truncated() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "JPEG")
    return buf.getvalue()[:200]


TRUNCATED = jpeg_truncated()


def post(server: Server, files: list[tuple[str, bytes]], **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + "predict", files=[("files", f) for f in files],
                      timeout=60, **kwargs)  # type: ignore[arg-type]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


# --- answers: exactly imgclf predict's JSON ----------------------------------------------------


def test_answer_is_byte_for_byte_what_imgclf_predict_prints(
        server: Server, photo: Callable[..., bytes], tiny_model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"red.png": photo("red", 1), "green.jpg": photo("green", 2, "JPEG"),
             "broken.jpg": TRUNCATED, "notes.txt": b"not an image at all"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    status = cli.main(["predict", *files, "--model", str(tiny_model), "--format", "json",
                       "--tta", "none", "--top-k", "2", "--output", "cli.json"])
    assert status == 1  # two files could not be read
    answer = post(server, list(files.items()), params={"top_k": 2})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.text == (tmp_path / "cli.json").read_text()
    results = answer.json()
    assert [r.get("predicted") for r in results] == ["red", "green", None, None]
    assert "cannot decode" in results[2]["error"]
    assert "not an image" in results[3]["error"]


def test_top_k_defaults_to_the_servers_and_is_checked(server: Server,
                                                     photo: Callable[..., bytes]) -> None:
    (result,) = post(server, [("blue.png", photo("blue"))]).json()
    assert result["top_k"][0][0] == "blue"
    assert len(result["top_k"]) == 3
    assert abs(sum(p for _, p in result["top_k"]) - 1) < 1e-4
    refused = post(server, [("blue.png", photo("blue"))], params={"top_k": 0})
    assert refused.status_code == 422


# --- refusals: 4xx with a clear message, and the server keeps serving ---------------------------


def test_only_unreadable_files_get_422_with_their_errors(server: Server) -> None:
    answer = post(server, [("broken.jpg", TRUNCATED), ("empty.png", b"")])
    assert answer.status_code == 422
    broken, empty = answer.json()
    assert broken["path"] == "broken.jpg" and broken["error"].startswith("cannot decode")
    assert empty == {"path": "empty.png", "error": "empty file"}


def test_decompression_bomb_is_refused_before_decoding(server: Server) -> None:
    answer = post(server, [("bomb.png", png_claiming(9_000, 8_000))])
    assert answer.status_code == 422
    assert "9000x8000 pixels is more than the 64,000,000 allowed" in answer.text


@pytest.mark.parametrize(("kwargs", "status", "words"), [
    ({"json": {"files": ["x"]}}, 415, "multipart/form-data"),
    ({"content": b""}, 415, "without a content type"),
    ({"data": {"other": "x"}, "files": {"image": ("a.png", b"x")}}, 400, "no 'files' field"),
    ({"data": {"files": "just text"}, "files": {"x": ("a.png", b"x")}}, 400, "is text"),
    ({"content": b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\""
      b"\r\n\r\n\x89PNG", "headers": {"content-type": "multipart/form-data; boundary=b"}},
     400, "ends before its closing boundary"),  # cut off inside the file
])
def test_malformed_requests_get_a_4xx_that_says_what_to_send(
        server: Server, kwargs: dict, status: int, words: str) -> None:
    answer = httpx.post(server.url + "predict", timeout=30, **kwargs)
    assert answer.status_code == status, answer.text
    assert words in answer.text
    assert httpx.get(server.url + "healthz").status_code == 200


def test_too_many_files_are_refused(server: Server, photo: Callable[..., bytes]) -> None:
    answer = post(server, [(f"{i}.png", photo("red", i)) for i in range(server.max_files + 1)])
    assert answer.status_code == 400
    assert f"more than {server.max_files} files in one request" in answer.json()["detail"]


def test_bodies_over_the_limit_are_refused_declared_or_streamed(
        server: Server, photo: Callable[..., bytes]) -> None:
    limit = server.max_upload_bytes
    big = b"\0" * (limit + 1)
    declared = post(server, [("big.png", big)])
    assert declared.status_code == 413
    assert f"{limit:,} bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: chunked transfer, cut off once past the limit
        head = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; "
                b"filename=\"big.png\"\r\n\r\n")
        yield head
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"
    streamed = httpx.post(server.url + "predict", content=chunks(), timeout=60,
                          headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413
    assert post(server, [("red.png", photo("red"))]).json()[0]["predicted"] == "red"


# --- concurrency: 50 requests together, all right, sharing model calls ---------------------


def test_fifty_concurrent_requests_are_all_answered_right_in_shared_model_calls(
        server: Server, photo: Callable[..., bytes]) -> None:
    before = httpx.get(server.url + "healthz").json()
    names = ["red", "green", "blue"]
    jobs = [(names[i % 3], photo(names[i % 3], 100 + i)) for i in range(50)]
    start = threading.Barrier(len(jobs))

    def send(job: tuple[str, bytes]) -> tuple[int, str, dict]:
        colour, data = job
        with httpx.Client(timeout=120) as client:
            start.wait()
            answer = client.post(server.url + "predict",
                                 files=[("files", (f"{colour}.png", data))])
        return answer.status_code, colour, answer.json()[0]

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(send, jobs))
    assert [status for status, _, _ in answers] == [200] * 50
    assert all(result["predicted"] == colour and result["path"] == f"{colour}.png"
               for _, colour, result in answers), answers
    after = httpx.get(server.url + "healthz").json()
    assert after["images"] - before["images"] == 50
    assert after["model_calls"] - before["model_calls"] < 50  # batched, not one call each


# --- the rest of the API ---------------------------------------------------------------------


def test_health_info_openapi_and_the_page(server: Server) -> None:
    health = httpx.get(server.url + "healthz").json()
    assert health["status"] == "ok" and health["token_required"] is False
    info = httpx.get(server.url + "info").json()
    assert info["classes"] == ["blue", "green", "red"] and info["image_size"] == 16
    assert info["max_files"] == server.max_files
    spec = httpx.get(server.url + "openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "swagger" in httpx.get(server.url + "docs").text.lower()
    page = httpx.get(server.url)
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert httpx.get(server.url + "static/app.js").status_code == 200


def test_report_gives_the_metrics_and_says_what_is_missing(server: Server,
                                                           report_dir: Path) -> None:
    report = httpx.get(server.url + "report").json()
    assert report["metrics"] == json.loads(
        (report_dir / "metrics" / "eval.json").read_text())["test"]
    assert report["pictures"] == {"confusion.png": True, "calibration.png": False,
                                  "misclassified.png": False}
    assert len(report["missing"]) == 2
    assert "calibration.png is missing" in report["missing"][0]
    picture = httpx.get(server.url + "report/confusion.png")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    assert picture.content == (report_dir / "metrics" / "plots" / "confusion.png").read_bytes()
    assert httpx.get(server.url + "report/calibration.png").status_code == 404
    assert httpx.get(server.url + "report/..%2Feval.json").status_code == 404


def test_server_binds_loopback_by_default_and_a_taken_port_is_a_user_error(
        server: Server, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status = cli.main(["serve", "--model", str(tiny_model), "--port", str(port)])
    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
