"""``imgclf serve`` under hostile or heavy use, over real loopback HTTP: memory of big
decodes, back-pressure, dropped work, slow clients, shutdown, logs and multipart rules.

The server here decodes one image at a time and admits few requests, so that a few
16-bit PNGs (cheap to send, slow and large to decode) fill it.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

MAX_QUEUE = 6
TIMEOUT_S = 1.0  # header and body timeouts of the server here


def gray16_png(side: int) -> bytes:
    """A ``side`` x ``side`` 16-bit grayscale PNG: ~100 KB that decode into ~100 MB+."""
    pixels = (np.add.outer(np.arange(side), np.arange(side)) * 7).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


BIG, MEDIUM = gray16_png(3000), gray16_png(1500)


def peak_rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM back to the current RSS


def upload(url: str, data: bytes, timeout: float = 60, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + "predict", files=[("files", ("big.png", data))],
                      timeout=timeout, **kwargs)


def together(n: int, send: Callable[[int], Any]) -> list[Any]:
    """``send(i)`` for ``i < n``, from ``n`` threads started at once."""
    start = threading.Barrier(n)

    def run(i: int) -> Any:
        start.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def raw(server: Any) -> socket.socket:
    host, port = server.url.removeprefix("http://").strip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


@pytest.fixture(scope="module")
def limited(tiny_model: Path, report_dir: Path, serve_helpers: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("serve-limited")
    server = serve_helpers.start_server(
        tiny_model, workdir, "--decode-threads", "1", "--max-queue", str(MAX_QUEUE),
        "--header-timeout-s", str(TIMEOUT_S), "--body-timeout-s", str(TIMEOUT_S),
        "--batch-window-ms", "30", env={"IMGCLF_SERVE_TOKEN": ""})
    yield server
    serve_helpers.stop_server(server)


def wait_idle(server: Any) -> None:
    """Until no request is queued or decoding (each is answered within a few seconds)."""
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "healthz").json()["waiting"] and time.monotonic() < deadline:
        time.sleep(0.1)


# --- 1. big decodes: at most --decode-threads at once ------------------------------------


def test_concurrent_big_decodes_take_the_memory_of_one(limited: Any) -> None:
    pid = limited.proc.pid
    upload(limited.url, BIG)  # once first: what stays allocated after any decode
    reset_peak(pid)
    base = peak_rss_mb(pid)
    assert upload(limited.url, BIG).status_code == 200
    one = peak_rss_mb(pid) - base
    reset_peak(pid)
    base = peak_rss_mb(pid)
    answers = together(4, lambda _: upload(limited.url, BIG))
    four = peak_rss_mb(pid) - base
    assert [a.status_code for a in answers] == [200] * 4
    assert one > 20, one  # the case is real: a decode takes memory
    assert four < 1.5 * one + 20, (one, four)  # not 4x: one decode at a time


# --- 2. back-pressure, dropped work and slow clients -------------------------------------


def test_a_full_server_answers_503_with_retry_after_and_serves_the_rest(limited: Any) -> None:
    wait_idle(limited)
    answers = together(3 * MAX_QUEUE, lambda _: upload(limited.url, MEDIUM))
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= MAX_QUEUE
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert "the server is busy" in refused.json()["detail"]
    assert httpx.get(limited.url + "healthz").status_code == 200


def test_requests_whose_clients_have_gone_are_not_computed(limited: Any) -> None:
    wait_idle(limited)
    before = httpx.get(limited.url + "healthz").json()["images"]

    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\""
            b"\r\n\r\n" + BIG + b"\r\n--b--\r\n")
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" % len(body))

    def abandon(_: int) -> None:
        with raw(limited) as sock:  # the whole request, then the client gives up
            sock.sendall(head + body)
            # Gone before one decode could finish (a 3000x3000 16-bit PNG takes longer),
            # so at most the first decode has begun while its client was still there.
            time.sleep(0.05)

    together(MAX_QUEUE - 1, abandon)
    wait_idle(limited)
    # One decode at a time: the one decoding when its client left may still be scored.
    assert httpx.get(limited.url + "healthz").json()["images"] - before <= 1


def test_a_connection_that_never_finishes_its_headers_is_closed(limited: Any) -> None:
    with raw(limited) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < TIMEOUT_S + 2


def test_a_body_that_never_finishes_gets_408(limited: Any) -> None:
    with raw(limited) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
        start = time.monotonic()
        answer = b"".join(iter(lambda: sock.recv(4096), b"")).decode()  # until closed
        assert time.monotonic() - start < TIMEOUT_S + 2
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408") and "connection: close" in head.lower()
    assert "did not arrive within 1 s" in json.loads(body)["detail"]


def test_the_body_is_held_once(limited: Any) -> None:
    size = 12 * 1024 * 1024
    data = np.random.default_rng(0).bytes(size)  # not an image: refused after reading
    wait_idle(limited)
    reset_peak(limited.proc.pid)
    base = peak_rss_mb(limited.proc.pid)
    answer = upload(limited.url, data)
    assert answer.status_code == 422 and "not an image" in answer.text
    grown = peak_rss_mb(limited.proc.pid) - base
    assert grown < 2.2 * size / 2**20, grown  # the file, and a buffer's growth at most


# --- 4. logs: one line for a client that leaves mid-upload -------------------------------


def test_a_client_leaving_mid_upload_is_one_log_line(limited: Any) -> None:
    with raw(limited) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
                     b"Content-Disposition: form-data; name=\"files\"; filename=\"a.png\""
                     b"\r\n\r\n" + b"\0" * 1000)
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while "during its upload" not in limited.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = limited.output()
    assert log.count("a client disconnected during its upload; dropped it") == 1
    assert "Traceback" not in log and "Exception in ASGI application" not in log


# --- 6. multipart by the standard's rules ------------------------------------------------


@pytest.mark.parametrize(("ctype", "before", "after"), [
    ("multipart/form-data; Boundary=xyz", b"", b""),
    ('multipart/form-data; boundary="xyz"', b"", b""),
    ("multipart/form-data; boundary=xyz", b"", b"\r\nan epilogue\r\n"),
    ("multipart/form-data; boundary=xyz; charset=utf-8", b"", b"\r\n"),
])
def test_multipart_bodies_are_read_by_the_standards_rules(
        limited: Any, photo: Callable[..., bytes], ctype: str, before: bytes,
        after: bytes) -> None:
    body = (before + b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; "
            b"filename=\"red.png\"\r\nContent-Type: image/png\r\n\r\n" + photo("red")
            + b"\r\n--xyz--" + after)
    answer = httpx.post(limited.url + "predict", content=body, timeout=30,
                        headers={"content-type": ctype})
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["predicted"] == "red"


# --- 3. shutdown: requests in flight finish or get a JSON 503 ----------------------------


def test_sigterm_with_requests_in_flight_answers_each_and_logs_no_traceback(
        tiny_model: Path, report_dir: Path, serve_helpers: Any, tmp_path: Path) -> None:
    server = serve_helpers.start_server(
        tiny_model, tmp_path, "--decode-threads", "1", "--max-queue", "64",
        "--shutdown-grace-s", "0.5", env={"IMGCLF_SERVE_TOKEN": ""})
    n = 24
    answers: list[httpx.Response] = []
    pool = ThreadPoolExecutor(n)
    try:
        futures = [pool.submit(upload, server.url, BIG) for _ in range(n)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until all are in: one decoding, others waiting
            waiting = httpx.get(server.url + "healthz").json()["waiting"]
            if waiting + sum(f.done() for f in futures) >= n:
                break
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
        # uvicorn ends by raising the signal again, so the exit says why it stopped.
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        pool.shutdown()
        serve_helpers.stop_server(server)
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert "shutting down" in answer.json()["detail"]
            assert answer.headers["retry-after"] == "1"
    log = server.output()
    assert "Traceback" not in log and "CancelledError" not in log
    assert log.count("timeout graceful shutdown exceeded") == 1
