"""Section 3: the split stage on all cores vs a one-thread Pillow loop."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from bench.context import Bench
from bench.framework import Figure, Target
from bench.photos import class_files
from bench.runner import log, quiet_stdout

SPLIT_TARGET = 1.8  # section 3: split.run / one-thread Pillow loop


def pillow_loop(files: Sequence[Path], size: int, out: Path) -> float:
    """Images/s of the one-thread reference: open, RGB, resize, tobytes, write."""
    from PIL import Image

    t0 = time.perf_counter()
    with open(out, "wb") as f:
        for path in files:
            with Image.open(path) as im:
                rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                f.write(rgb.tobytes())
    return len(files) / (time.perf_counter() - t0)


def split_rate(raw: Path, size: int, out: Path, n: int) -> float:
    """Images/s of the split stage's ``run`` (decode, hash, de-duplicate, split, write)."""
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    t0 = time.perf_counter()
    with quiet_stdout():
        split.run(DataParams(image_size=size), SplitParams(), raw, out)
    return n / (time.perf_counter() - t0)


def section_split(bench: Bench) -> list[Figure]:
    """Section 3: split.run on all cores vs a one-thread Pillow loop."""
    files = [p for fs in class_files(bench.photos).values() for p in fs]
    for path in files:  # both sides then read from the page cache
        path.read_bytes()
    ours, ref = [], []
    for r in range(bench.repeats):
        log(f"split: Pillow loop and split.run over {len(files)} photos ({r + 1}/{bench.repeats})")
        ref.append(pillow_loop(files, bench.size, bench.work / "pillow.bin"))
        ours.append(split_rate(bench.photos, bench.size, bench.work / f"split{r}", len(files)))
    cores = len(os.sched_getaffinity(0))
    return [Figure("3 split", f"split.run {bench.size}px, {len(files)} photos", max(ours),
                   max(ref), "img/s", Target(">=", SPLIT_TARGET),
                   f"{cores} cores vs 1 thread; ours also hashes, de-duplicates and writes "
                   "the manifest")]
