#!/usr/bin/env python3
"""Each shippable OOD score of a trained model through each export format: does it survive?

For every score that can be computed in-graph (msp, energy, mahalanobis), the trained
model's classifier gets that score (the model's own fitted Gaussian, so mahalanobis
needs a model trained with ``ood.method: mahalanobis``), is written as a
SavedModel and converted to LiteRT float16 and full int8 (the export stage's
converters and representative images), and scored on the test split and the generated
out-of-domain images: AUROC and FPR at 95% TPR, per format. The table of docs/ood.md
("Which score survives int8") comes from this.

    scripts/ood_formats.py --data data/prepared --model models/model.keras --out table.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _scores(model: Any, runtime: Any, images: np.ndarray) -> np.ndarray:
    """``(N,)`` OOD scores of ``images`` by the Keras ``model``, or by ``runtime``."""
    pixels = images.astype(np.float32)
    if runtime is None:
        return np.concatenate([np.asarray(model.predict_on_batch(pixels[i:i + 32])[1])
                               for i in range(0, len(pixels), 32)])
    return runtime.predict_scored(pixels)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--model", default="models/model.keras")
    parser.add_argument("--per-kind", type=int, default=40)
    parser.add_argument("--int8-samples", type=int, default=300)
    parser.add_argument("--methods", default=",".join(("msp", "energy", "mahalanobis")),
                        help="the scores, comma-separated; mahalanobis needs a model "
                        "trained with it (its fitted Gaussian)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    from imgclf.data.shards import read_split
    from imgclf.export.representative import representative_images
    from imgclf.export.writers import write_savedmodel, write_tflite
    from imgclf.inference.runtimes import load_runtime
    from imgclf.models import ood, ood_layer
    from imgclf.models.saving import load_model

    scored, info = load_model(args.model)
    clf, gaussian = ood_layer.classifier_of(scored), ood_layer.reference_of(scored).gaussian
    test, _ = read_split(args.data, "test")
    generated = ood.generated_images(test.shape[1], args.per_kind, 0, test)
    representative = representative_images(args.data, args.int8_samples)
    rows = []
    for method in args.methods.split(","):
        model = ood_layer.with_score(clf, method, gaussian)
        tmp = Path(tempfile.mkdtemp(prefix="ood-formats-"))
        write_savedmodel(model, info, tmp / "savedmodel")
        runtimes = {"keras": None}
        for name, rep in (("tflite_float16", None), ("tflite_int8", representative)):
            write_tflite(tmp / "savedmodel" / "1", info, tmp / f"{name}.tflite", rep)
            runtimes[name] = load_runtime(tmp / f"{name}.tflite")
        for fmt, runtime in runtimes.items():
            known = _scores(model, runtime, test)
            for kind, images in generated.items():
                rows.append({"method": method, "format": fmt, "kind": kind,
                             **ood.detection(known, _scores(model, runtime, images))})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
