"""The audit's embedding findings on N random embeddings: seconds and peak memory.

    python scripts/audit_scale.py 100000        # N images, d 1280 (MobileNetV2 0.5)

Writes the embeddings as the features stage does (float16 .npy files, memory-mapped by
the audit), then runs label issues, outliers and near-duplicates on them and prints
the time and two peaks of memory: the heap (every NumPy array the audit allocates,
by tracemalloc) and the process's resident set, which also counts the pages of the
memory-mapped files it has read (page cache the kernel can drop at will). The
embeddings are written by a child process, so neither peak counts their making.
Random labels make almost every image a "label issue": the worst case for the tables.
The quality checks stream the images and keep 5 floats per image; they are timed on
the real photos instead (docs/audit.md).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from imgclf.audit import findings as fd
from imgclf.audit.records import Records
from imgclf.audit.stage import embedding_findings
from imgclf.data.stratify import SPLITS
from imgclf.params import AuditParams

DIM, CLASSES, CHUNK = 1280, 3, 10_000


def write(folder: Path, n: int, rng: np.random.Generator, files: bool = True) -> Records:
    """Random non-negative embeddings of ``n`` images in ``folder``, split 70/15/15
    (with ``files`` false, only their records: the same labels, no files)."""
    counts = [n - 2 * (n * 15 // 100), n * 15 // 100, n * 15 // 100]
    labels = rng.integers(0, CLASSES, n)
    start = 0
    for name, count in zip(SPLITS, counts, strict=True) if files else ():
        out = np.lib.format.open_memmap(folder / f"{name}-embed.npy", "w+", np.float16,
                                        (count, DIM))
        for i in range(0, count, CHUNK):
            rows = min(CHUNK, count - i)
            out[i:i + rows] = np.abs(rng.normal(size=(rows, DIM)))
        out.flush()
        del out
        np.save(folder / f"{name}-labels.npy", labels[start:start + count].astype(np.int32))
        start += count
    if files:
        (folder / "features.json").write_text("{}")
    split_of = np.repeat(np.arange(3), counts)
    return Records([f"c/{i}.jpg" for i in range(n)], split_of, labels,
                   np.concatenate([np.arange(c) for c in counts]),
                   [f"c{c}" for c in range(CLASSES)])


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, __file__, str(n), "--write", tmp], check=True)
        records = write(Path(tmp) / "records-only", n, np.random.default_rng(0), files=False)
        # The libraries first: their import would count in the heap (and the time).
        import cleanlab.filter  # noqa: F401
        import sklearn.linear_model
        import sklearn.model_selection
        import sklearn.utils.extmath  # noqa: F401

        tracemalloc.start()
        start, cpu = time.perf_counter(), time.process_time()
        found = fd.Findings()
        embedding_findings(found, records, tmp, AuditParams())
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        heap = tracemalloc.get_traced_memory()[1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"images": n, "dim": DIM, "seconds": round(seconds, 1),
                      "cpu_seconds": round(cpu, 1),
                      "peak_heap_mb": round(heap / 2**20), "peak_rss_mb": round(peak / 1024),
                      "embeddings_on_disk_mb": round(n * DIM * 2 / 2**20),
                      "label_issues": len(found.tables["label_issues"]),
                      "near_duplicates": len(found.tables["near_duplicates"])}))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    if sys.argv[2:3] == ["--write"]:
        write(Path(sys.argv[3]), count, np.random.default_rng(0))
    else:
        main(count)
