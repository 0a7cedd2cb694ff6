"""``imgclf serve`` under hostile or heavy use, over real loopback HTTP: the memory of
big decodes and of an upload, and multipart bodies by the standard's rules.

The server here decodes one image at a time, so that a few 16-bit PNGs (cheap to send,
slow and large to decode) fill it.
"""

from __future__ import annotations

import io
import threading
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


@pytest.fixture(scope="module")
def limited(tiny_model: Path, report_dir: Path, serve_helpers: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("serve-limited")
    server = serve_helpers.start_server(
        tiny_model, workdir, "--decode-threads", "1", "--batch-window-ms", "30",
        env={"IMGCLF_SERVE_TOKEN": ""})
    yield server
    serve_helpers.stop_server(server)


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


# --- the body, held once --------------------------------------------------------------


def test_the_body_is_held_once(limited: Any) -> None:
    size = 12 * 1024 * 1024
    data = np.random.default_rng(0).bytes(size)  # not an image: refused after reading
    reset_peak(limited.proc.pid)
    base = peak_rss_mb(limited.proc.pid)
    answer = upload(limited.url, data)
    assert answer.status_code == 422 and "not an image" in answer.text
    grown = peak_rss_mb(limited.proc.pid) - base
    assert grown < 2.2 * size / 2**20, grown  # the file, and a buffer's growth at most


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
