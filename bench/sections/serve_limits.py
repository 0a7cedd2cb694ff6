"""Section 13: imgclf serve's limits (docs/serve.md, "Limits"): the memory of uploads that
decode into gigabytes, and back-pressure at 64 clients against the same server without
limits."""

from __future__ import annotations

import http.client
import io
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench.context import Bench
from bench.framework import BenchError, Figure, Target, percentile, share
from bench.photos import class_files
from bench.runner import log, mirror_dir
from bench.sections.serve import multipart, serve_model, serving

# A small PNG that decodes into 128 MB of 16-bit pixels (the case of issue 24).
BIG_SIDE = (8000, 7999)
BIG_QUICK = (2000, 1999)
CONCURRENT_BIG = 4
# Issue 24's targets: peak RSS over idle of one such upload, and of 4 at once.
ONE_BIG_MB, FOUR_BIG_MB = 300, 1024
CLIENTS, REQUESTS, REQUESTS_QUICK = 64, 512, 128
# The limited server queues few requests so that 64 clients overrun it; the other one
# has limits no load here reaches.
LIMITED = ("--max-queue", "16")
UNLIMITED = ("--max-queue", "1000000", "--max-connections", "1000000")


def big_png(side: tuple[int, int]) -> bytes:
    """A 16-bit grayscale PNG of ``side`` pixels: a gentle gradient, so it compresses small."""
    import numpy as np
    from PIL import Image

    width, height = side
    row = (np.arange(width, dtype=np.uint32) * 65535 // max(width - 1, 1)).astype(np.uint16)
    pixels = np.broadcast_to(row, (height, width))
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, "PNG")  # uint16: mode I;16
    return out.getvalue()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory since its counter was last reset (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def reset_peak(pid: int) -> float:
    """Reset the peak-memory counter of ``pid`` to its resident memory now; that in MB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_mb(pid)


def post(address: tuple[str, int], body: bytes, ctype: str) -> tuple[int, float]:
    """(status, seconds) of one POST /predict on a connection of its own."""
    conn = http.client.HTTPConnection(*address, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/predict", body, {"Content-Type": ctype})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer.status, time.perf_counter() - t0


def concurrent(address: tuple[str, int], bodies: Sequence[tuple[bytes, str]],
               clients: int, total: int) -> list[tuple[int, float]]:
    """(status, seconds) of ``total`` requests from ``clients`` threads started together."""
    results: list[tuple[int, float]] = []
    start = threading.Barrier(clients)

    def client(i: int, count: int) -> None:
        start.wait()
        for k in range(count):
            body, ctype = bodies[(i * 7919 + k) % len(bodies)]
            status, seconds = post(address, body, ctype)
            if status == 503:
                time.sleep(0.05)  # a client that was told to retry backs off a little
            results.append((status, seconds))

    threads = [threading.Thread(target=client, args=(i, n))
               for i, n in enumerate(share(total, clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def memory_figures(bench: Bench, model: Path) -> list[Figure]:
    """Peak RSS over idle of one, then four concurrent, uploads of the 16-bit PNG."""
    side = BIG_QUICK if bench.quick else BIG_SIDE
    body, ctype = multipart("big16.png", big_png(side))
    log(f"serve limits: a {len(body) // 1024} KB 16-bit PNG of {side[0]}x{side[1]} pixels")
    with serving(model, model.parent) as (address, proc):
        post(address, *multipart("warm.png", big_png((64, 64))))  # tracing, first batch
        figures = []
        for count, bound in ((1, ONE_BIG_MB), (CONCURRENT_BIG, FOUR_BIG_MB)):
            idle = reset_peak(proc.pid)
            statuses = [s for s, _ in concurrent(address, [(body, ctype)], count, count)]
            if statuses != [200] * count:
                raise BenchError(f"the 16-bit PNG got {statuses}, not {count} x 200")
            figures.append(Figure(
                "13 serve limits", f"{count} x 16-bit {side[0]}x{side[1]} PNG: peak RSS "
                "over idle", peak_rss_mb(proc.pid) - idle, None, "MB",
                Target("<=", bound, on="value"),
                f"{len(body) // 1024} KB upload, predicted (200); idle RSS {idle:.0f} MB"))
    return figures


def load_figures(bench: Bench, model: Path) -> list[Figure]:
    """p99 latency and the share of 503 at 64 clients, limited vs unlimited server."""
    total = REQUESTS_QUICK if bench.quick else REQUESTS
    files = [p for paths in class_files(mirror_dir()).values() for p in paths[:16]]
    bodies = [multipart(p.name, p.read_bytes()) for p in files]
    seen = {}
    for name, extra in (("unlimited", UNLIMITED), ("limited", LIMITED)):
        log(f"serve limits: {total} requests from {CLIENTS} clients, {name} server")
        with serving(model, model.parent, extra) as (address, _):
            concurrent(address, bodies, 8, 16)  # warm-up
            seen[name] = concurrent(address, bodies, CLIENTS, total)
    p99 = {k: percentile([s for _, s in v], 99) * 1000 for k, v in seen.items()}
    busy = {k: sum(st == 503 for st, _ in v) / len(v) for k, v in seen.items()}
    other = [st for v in seen.values() for st, _ in v if st not in (200, 503)]
    if other:
        raise BenchError(f"{len(other)} answers were neither 200 nor 503, e.g. {other[0]}")
    note = (f"{total} one-photo requests; limited: {' '.join(LIMITED)}, else the defaults; "
            f"reference: {' '.join(UNLIMITED)}")
    return [
        Figure("13 serve limits", f"{CLIENTS} clients: p99 latency", p99["limited"],
               p99["unlimited"], "ms", Target("<=", 0.75), note),
        Figure("13 serve limits", f"{CLIENTS} clients: share answered 503",
               busy["limited"], busy["unlimited"], "share", None,
               "503 with Retry-After; the reference answers all (its queue has no bound)"),
    ]


def section_serve_limits(bench: Bench) -> list[Figure]:
    """Section 13: the serve limits of issue 24 (memory per decode, back-pressure)."""
    model, _ = serve_model(bench)
    return memory_figures(bench, model) + load_figures(bench, model)
