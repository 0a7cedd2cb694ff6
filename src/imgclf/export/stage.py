"""The export stage: models/model.keras -> models/export/ and metrics/export.json.

Every format of ``export.formats`` is written (``writers``), loaded back through the
same runtime ``imgclf predict`` uses (``imgclf.inference.runtimes``) and scored on the
test split, with the Keras model scored the same way beside it. The test images are
the split stage's pixels, as ``imgclf evaluate`` reads them, scored one pass each (no
test-time augmentation: the figures describe one call of the exported file, as an app
makes it). The metrics are written even when a format misses its bound; then the
stage fails with one line naming each miss (``bounds``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import fsutil
from imgclf.data.shards import read_meta, read_split
from imgclf.errors import UserError
from imgclf.export.bounds import bound_misses
from imgclf.export.calibration import CALIBRATION_SPLIT, calibration_images
from imgclf.export.scoring import accuracy, agreement, predict_timed, single_image_latency_ms
from imgclf.export.writers import write_format
from imgclf.inference.runtimes import (
    Runtime,
    first_line,
    keras_runtime,
    load_runtime,
    model_kind,
)
from imgclf.models.saving import load_model
from imgclf.params import ExportParams

SCORED_SPLIT = "test"
DECIMALS = 6


def size_bytes(path: Path) -> int:
    """The size of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def score(runtime: Runtime, images: np.ndarray, labels: np.ndarray, params: ExportParams,
          reference: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """``(figures, probs (N, C))`` of ``runtime`` on ``images`` (N, S, S, 3) and ``labels``;
    ``agreement`` with the ``reference`` probabilities when they are given."""
    probs, rate = predict_timed(runtime, images, params.batch_size)
    p50, p95 = single_image_latency_ms(runtime, images, params.latency_runs)
    row: dict[str, Any] = {"accuracy": accuracy(labels, probs)}
    if reference is not None:
        row["agreement"] = agreement(probs, reference)
    row |= {"latency_ms_p50": p50, "latency_ms_p95": p95, "images_per_s": rate}
    return row, probs


def run(params: ExportParams, data: str | os.PathLike[str], model_path: str | os.PathLike[str],
        out_dir: str | os.PathLike[str], metrics_path: str | os.PathLike[str]) -> None:
    meta = read_meta(data)
    if model_kind(model_path) != "keras":
        raise UserError(f"{model_path}: the export stage starts from a .keras model file")
    model, info = load_model(model_path)
    keras = keras_runtime(model, info, Path(model_path))
    if info.class_names != meta.class_names or info.image_size != meta.image_size:
        raise UserError(f"{model_path} was trained on other data (classes {info.class_names}, "
                        f"{info.image_size} px); retrain it: dvc repro train")
    images, labels = read_split(data, SCORED_SPLIT)
    if not len(images):
        raise UserError(f"{data}: the test split is empty; raise split.test")
    images = images.astype(np.float32)  # once: every format takes float pixels 0..255
    keras_size = size_bytes(Path(model_path))
    results: dict[str, dict[str, Any]] = {}
    results["keras"], keras_probs = score(keras, images, labels, params)
    results["keras"] = {"size_bytes": keras_size, **results["keras"]}
    calibration = None
    if "tflite_int8" in params.formats:
        calibration = calibration_images(data, params.int8_samples)
    with fsutil.atomic_dir(out_dir) as tmp:
        for fmt in params.formats:
            print(f"export: writing {fmt}", flush=True)
            try:
                path = write_format(fmt, model, info, tmp, calibration)
            except Exception as exc:  # the converters raise many types; name the format
                raise UserError(f"{fmt}: the conversion failed ({first_line(exc)})") from exc
            runtime = load_runtime(path)
            row, _ = score(runtime, images, labels, params, reference=keras_probs)
            size = size_bytes(path)
            results[fmt] = {"size_bytes": size, "size_ratio": size / keras_size, **row}
    metrics = {"test_images": len(images),
               "int8_calibration": {"split": CALIBRATION_SPLIT,
                                    "images": 0 if calibration is None else len(calibration)},
               **_rounded(results)}
    fsutil.write_json(metrics_path, metrics)
    _summary(results, metrics_path)
    misses = bound_misses(results, params)
    if misses:
        raise UserError("missed bounds: " + "; ".join(misses))


def _rounded(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {fmt: {k: round(v, DECIMALS) if isinstance(v, float) else v for k, v in row.items()}
            for fmt, row in results.items()}


def _summary(results: Mapping[str, Mapping[str, Any]],
             metrics_path: str | os.PathLike[str]) -> None:
    for fmt, row in results.items():
        agree = f", agreement {row['agreement']:.4f}" if "agreement" in row else ""
        print(f"export: {fmt}: {row['size_bytes'] / 1e6:.2f} MB, accuracy {row['accuracy']:.4f}"
              f"{agree}, {row['latency_ms_p50']:.2f} ms per image (p95 "
              f"{row['latency_ms_p95']:.2f}), {row['images_per_s']:.0f} images/s batched")
    print(f"export: metrics in {metrics_path}")
