"""Section 10: JPEG-encoded TFRecord shards vs raw pixels: bytes and training speed."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import Bench
from bench.fitting import compiled_cnn, shard_datasets, timed_epoch, warm_up
from bench.framework import Figure, Target
from bench.photos import folder_bytes
from bench.runner import log, quiet_stdout

# Section 10: prepared bytes / source JPEG bytes at the default encoding and image size,
# and training images/s from the encoded shards / from raw-pixel shards, per (arch, px).
PREPARED_BYTES_TARGET = 1.5
ENCODED_THROUGHPUT_TARGETS = {("mobilenet_v2", 224): 0.97, ("small", 128): 0.9}


def split_into(raw: Path, out: Path, size: int, encoding: str) -> Path:
    """``split.run`` of ``raw`` at ``size`` px with ``split.encoding: encoding``."""
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    with quiet_stdout():
        split.run(DataParams(image_size=size), SplitParams(encoding=encoding), raw, out)
    return out


def section_tfrecord(bench: Bench) -> list[Figure]:
    """Section 10: prepared bytes of the default encoding vs the source JPEGs, and training
    images/s from JPEG shards vs raw-pixel shards (the same model, the same run)."""
    import keras

    source = folder_bytes(bench.photos)
    figures = []
    for (arch, size), target in ENCODED_THROUGHPUT_TARGETS.items():
        size = 64 if bench.quick else size
        log(f"tfrecord: splitting {bench.photos} at {size} px as jpeg and raw")
        jpeg = split_into(bench.photos, bench.work / f"jpeg-{size}", size, "jpeg")
        raw = split_into(bench.photos, bench.work / f"raw-{size}", size, "raw")
        for name, out in (("jpeg", jpeg), ("raw", raw)):
            prepared = folder_bytes(out)
            figures.append(Figure("10 tfrecord", f"prepared bytes, {name} {size}px", prepared / 1e6,
                                  source / 1e6, "MB", Target("<=", PREPARED_BYTES_TARGET)
                                  if name == "jpeg" and size == 224 else None,
                                  "vs the source files' bytes"))
        keras.backend.clear_session()
        runs = []
        for out in (jpeg, raw):
            meta, train, _ = shard_datasets(out, bench.batch)
            model = compiled_cnn(arch, meta.image_size, len(meta.class_names), len(train))
            warm_up(model, train)
            runs.append((model, train, meta.counts["train"]))
        repeats = max(2, bench.repeats)
        log(f"tfrecord: {arch} {size}px, {repeats} interleaved epochs from jpeg and raw")
        rates: list[list[float]] = [[], []]
        for _ in range(repeats):  # interleaved, so a busy moment of the machine hits both
            for i, (model, train, n) in enumerate(runs):
                rates[i].append(timed_epoch(model, train, n))
        figures.append(Figure("10 tfrecord", f"train {arch} {size}px, jpeg vs raw shards",
                              max(rates[0]), max(rates[1]), "img/s", Target(">=", target),
                              f"best of {repeats} interleaved epochs each, after a 2-batch "
                              "warm-up"))
        shutil.rmtree(jpeg)
        shutil.rmtree(raw)
    return figures
