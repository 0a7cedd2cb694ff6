"""Section 8: imgclf serve under concurrent load vs direct in-process predictions."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.context import Bench
from bench.framework import BenchError, Figure, Target, percentile, share
from bench.photos import class_files
from bench.runner import REPO, child_env, imgclf_cmd, log, mirror_dir

# Section 8: concurrent HTTP clients, and requests in all per level (--quick: fewer).
SERVE_CLIENTS = (1, 8, 32)
SERVE_REQUESTS, SERVE_REQUESTS_QUICK = 256, 64
# Section 8: server requests/s / direct in-process images/s, per number of clients.
SERVE_TARGETS = {1: 0.5, 8: 1.0, 32: 1.5}


def multipart(name: str, data: bytes, boundary: str = "imgclf-bench") -> tuple[bytes, str]:
    """(body, content type) of a one-file upload in the ``files`` field."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def serve_model(bench: Bench) -> tuple[Path, int]:
    """(model file, image size): params.yaml's architecture, or ``small`` with --quick.

    The weights are left untrained (no pretrained ones are fetched): the time of a
    prediction does not depend on their values.
    """
    from imgclf.models.architectures import build_model
    from imgclf.models.saving import ModelInfo, save_model
    from imgclf.params import ModelParams, load_params

    params = load_params(REPO / "params.yaml")
    if bench.quick:
        model_params, size = ModelParams(arch="small"), 64
    else:
        model_params = params.model.model_copy(update={"pretrained": False})
        size = params.data.image_size
    path = bench.work / "serve" / "model.keras"
    path.parent.mkdir(parents=True)
    names = sorted(class_files(mirror_dir()))
    save_model(build_model(model_params, size, len(names)), path, ModelInfo(names, size))
    return path, size


@contextlib.contextmanager
def serving(model: Path, cwd: Path, extra: Sequence[str] = ()
            ) -> Iterator[tuple[tuple[str, int], subprocess.Popen[bytes]]]:
    """``imgclf serve --port 0 EXTRA...`` as a child process: yield ((host, port), process)."""
    log_path = cwd / "serve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(imgclf_cmd("serve", "--model", str(model), "--port", "0",
                                           "--tta", "none", *extra),
                                cwd=cwd, env=child_env() | {"IMGCLF_SERVE_TOKEN": ""},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            found = re.search(r" at http://([\d.]+):(\d+)/ ;", text)
            if found and "Application startup complete" in text:
                yield (found[1], int(found[2])), proc
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"imgclf serve did not start:\n{text[-2000:]}")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load_level(address: tuple[str, int], bodies: Sequence[tuple[bytes, str]], clients: int,
               total: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in s) of ``total`` POST /predict from ``clients`` threads.

    Each client keeps one connection and sends its share one after another; all start
    together. Every answer must be 200 with a prediction, or BenchError.
    """
    import http.client
    import threading

    latencies: list[float] = []
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(i: int, count: int) -> None:
        conn = http.client.HTTPConnection(*address, timeout=300)
        start.wait()
        for k in range(count):
            body, ctype = bodies[(i * 7919 + k) % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": ctype})
            answer = conn.getresponse()
            data = answer.read()
            latencies.append(time.perf_counter() - t0)
            if answer.status != 200 or b'"predicted"' not in data:
                failures.append(f"{answer.status} {data[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i, n))
               for i, n in enumerate(share(total, clients))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if failures:
        raise BenchError(f"{len(failures)} of {total} requests failed, e.g. {failures[0]}")
    return total / seconds, latencies


def direct_calls(model_path: Path, photos: Sequence[bytes], size: int,
                 total: int) -> tuple[float, list[float]]:
    """(images/s, latencies in s) of ``total`` images decoded and predicted one at a time
    in this process, with the functions the server uses: the reference of section 8."""
    import numpy as np

    from imgclf.data.images import decode_image
    from imgclf.inference.batch import predict_batch
    from imgclf.models.saving import load_model

    model, _ = load_model(model_path)
    for data in photos[:3]:  # warm-up: tracing
        predict_batch(model, decode_image(data, size)[None].astype(np.float32))
    latencies = []
    t0 = time.perf_counter()
    for k in range(total):
        t1 = time.perf_counter()
        predict_batch(model, decode_image(photos[k % len(photos)], size)[None]
                      .astype(np.float32))
        latencies.append(time.perf_counter() - t1)
    return total / (time.perf_counter() - t0), latencies


def section_serve(bench: Bench) -> list[Figure]:
    """Section 8: imgclf serve's requests/s and p50/p95 latency at 1, 8 and 32 concurrent
    clients vs decoding and predicting one image at a time in this process."""
    total = SERVE_REQUESTS_QUICK if bench.quick else SERVE_REQUESTS
    files = [p for paths in class_files(mirror_dir()).values() for p in paths[:16]]
    photos = [p.read_bytes() for p in files]
    bodies = [multipart(p.name, data) for p, data in zip(files, photos, strict=True)]
    model, size = serve_model(bench)
    log(f"serve: direct calls, {total} images of {size} px")
    direct_rate, direct_lat = direct_calls(model, photos, size, total)
    d50, d95 = percentile(direct_lat, 50) * 1000, percentile(direct_lat, 95) * 1000
    figures = []
    with serving(model, model.parent) as (address, _):
        load_level(address, bodies, max(SERVE_CLIENTS), 2 * max(SERVE_CLIENTS))  # warm-up
        for clients in SERVE_CLIENTS:
            log(f"serve: {total} requests from {clients} concurrent clients")
            rate, lat = load_level(address, bodies, clients, total)
            p50, p95 = percentile(lat, 50) * 1000, percentile(lat, 95) * 1000
            figures += [
                Figure("8 serve", f"{clients} clients: throughput", rate, direct_rate, "req/s",
                       Target(">=", SERVE_TARGETS[clients]),
                       f"{total} requests of 1 photo; reference: decode + predict one image "
                       "at a time in one process"),
                Figure("8 serve", f"{clients} clients: p50 latency", p50, d50, "ms"),
                Figure("8 serve", f"{clients} clients: p95 latency", p95, d95, "ms"),
            ]
    return figures
