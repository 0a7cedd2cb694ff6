"""Models fitted and timed as the train stage does them, and the peer baseline script."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.context import Bench
from bench.runner import last_json, run_child


def compiled_cnn(arch: str, size: int, n_classes: int, steps: int) -> Any:
    """The named CNN, set up and compiled as the train stage does with default train.*.

    That is ``configure_runtime`` first (seeds and TensorFlow op determinism, on by
    default), then Adam at the default rate over ``steps`` batches an epoch, sparse
    categorical cross-entropy and accuracy.
    """
    from imgclf.models.architectures import build_model
    from imgclf.params import ModelParams, TrainParams
    from imgclf.training.optim import make_accuracy, make_loss, make_optimizer
    from imgclf.training.train import configure_runtime

    train = TrainParams()
    configure_runtime(train)
    model = build_model(ModelParams(arch=arch), size, n_classes)
    model.compile(optimizer=make_optimizer(train, train.learning_rate, steps),
                  loss=make_loss(train), metrics=[make_accuracy(train)],
                  jit_compile=train.jit_compile)
    return model


def warm_up(model: Any, ds: Any) -> None:
    """The baseline's convention: fit 2 batches first (tracing and graph building)."""
    model.fit(ds.take(2), epochs=1, verbose=0, shuffle=False)


def timed_epoch(model: Any, ds: Any, n_images: int) -> float:
    """Images per second of one epoch of ``fit`` (no validation)."""
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    return n_images / (time.perf_counter() - t0)


def shard_datasets(prepared: Path, batch: int) -> tuple[Any, Any, Any]:
    """(meta, shuffled train batches, val batches) exactly as the train stage makes them."""
    from imgclf.data.records import make_dataset
    from imgclf.data.shards import read_meta

    meta = read_meta(prepared)
    train = make_dataset(prepared, meta, "train", batch, shuffle=True, seed=42)
    return meta, train, make_dataset(prepared, meta, "val", batch)



def baseline_run(bench: Bench, data: Path, arch: str, size: int, epochs: int = 1) -> dict:
    """The peer baseline script's JSON line, with its whole wall time added as ``wall_s``."""
    cmd = [sys.executable, str(bench.baseline), str(data), "--arch", arch, "--size", str(size),
           "--epochs", str(epochs)]
    run = run_child(cmd, bench.work, what=f"baseline {arch}")
    return last_json(run.output) | {"wall_s": run.seconds}
