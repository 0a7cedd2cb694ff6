"""Sections 1 and 2: training throughput vs the baseline, and the input pipeline's overhead."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.context import Bench
from bench.fitting import baseline_run, compiled_cnn, shard_datasets, timed_epoch, warm_up
from bench.framework import Figure, Target
from bench.runner import log

# Section 1: ours / baseline images per second must reach these.
THROUGHPUT_TARGETS = {"small": 1.3, "medium": 1.0, "large": 1.0}
OVERHEAD_TARGET = 0.95  # section 2: shards / in-memory tensors


def ours_throughput(bench: Bench, arch: str) -> tuple[float, float]:
    """(train images/s without validation, the same counting a cold validation pass)."""
    import keras

    meta, train, val = shard_datasets(bench.prepared, bench.batch)
    keras.backend.clear_session()
    model = compiled_cnn(arch, meta.image_size, len(meta.class_names), len(train))
    n = meta.counts["train"]
    warm_up(model, train)
    best = max(timed_epoch(model, train, n) for _ in range(bench.repeats))
    t0 = time.perf_counter()
    model.evaluate(val, verbose=0)  # traced here, as the baseline's is inside its timed fit
    val_s = time.perf_counter() - t0
    return best, n / (n / best + val_s)



def section_throughput(bench: Bench) -> list[Figure]:
    """Section 1: images/s of our shards + model vs the baseline script, per arch."""
    figures = []
    for arch in bench.archs:
        log(f"throughput: baseline {arch}")
        base = max((baseline_run(bench, bench.photos, arch, bench.size)
                    for _ in range(bench.repeats)), key=lambda r: r["images_per_s"])
        log(f"throughput: ours {arch}")
        ours, ours_val = ours_throughput(bench, arch)
        note = (f"1 epoch after a 2-batch warm-up; ours without validation; counting a "
                f"validation pass as the baseline's timing does: {ours_val:.1f} img/s = "
                f"{ours_val / base['images_per_s']:.2f}x")
        figures.append(Figure("1 throughput", f"train {arch} {bench.size}px", ours,
                              base["images_per_s"], "img/s",
                              Target(">=", THROUGHPUT_TARGETS.get(arch, 1.0)), note))
    return figures


def memory_dataset(prepared: Path, batch: int) -> tuple[Any, int]:
    """The train split as float32 tensors in memory, batched: the compute ceiling."""
    import tensorflow as tf

    from imgclf.data.shards import read_split

    images, labels = read_split(prepared, "train")
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), labels))
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE), len(labels)


def section_overhead(bench: Bench) -> list[Figure]:
    """Section 2: the same model fed from shards vs from tensors already in memory."""
    import keras

    arch = "small"  # the least compute per image, so the input pipeline weighs the most
    keras.backend.clear_session()
    meta, shards, _ = shard_datasets(bench.prepared, bench.batch)
    in_memory, n = memory_dataset(bench.prepared, bench.batch)
    models = []
    for ds in (shards, in_memory):
        model = compiled_cnn(arch, meta.image_size, len(meta.class_names), len(shards))
        warm_up(model, ds)
        models.append(model)
    repeats = max(2, bench.repeats)
    log(f"overhead: {repeats} interleaved epochs of each, {arch} model")
    rates: list[list[float]] = [[], []]
    for _ in range(repeats):  # interleaved, so a busy moment of the machine hits both
        for i, ds in enumerate((shards, in_memory)):
            rates[i].append(timed_epoch(models[i], ds, n))
    return [Figure("2 overhead", f"shards vs in-memory, {arch} {meta.image_size}px",
                   max(rates[0]), max(rates[1]), "img/s", Target(">=", OVERHEAD_TARGET),
                   f"best of {repeats} epochs each; in-memory = from_tensor_slices of float32")]
