"""The targets each exported format must meet, checked on ``metrics/export.json``'s rows.

Each miss is one sentence naming the format, the figure, the bound and by how much it
was missed; the stage joins them into its one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imgclf.params import ExportParams

AGREEING_FORMATS = ("savedmodel", "onnx", "tflite_float16")  # must give Keras' answers
INT8 = "tflite_int8"


def bound_misses(results: Mapping[str, Mapping[str, Any]], params: ExportParams) -> list[str]:
    """The missed bounds of ``results`` (``{format: {accuracy, agreement, size_ratio, ...}}``
    with a ``keras`` row), one sentence each; empty when every format met its bounds."""
    misses = []
    for fmt in AGREEING_FORMATS:
        if fmt not in results:
            continue
        agree = results[fmt]["agreement"]
        if not agree >= params.min_agreement:
            misses.append(f"{fmt} agrees with the Keras model on {agree:.2%} of the test "
                          f"images, {100 * (params.min_agreement - agree):.2f} points below "
                          f"export.min_agreement ({params.min_agreement:.2%})")
    if INT8 in results:
        row = results[INT8]
        drop = results["keras"]["accuracy"] - row["accuracy"]
        if not drop <= params.int8_max_accuracy_drop:
            misses.append(f"{INT8} test accuracy {row['accuracy']:.4f} is {100 * drop:.2f} "
                          f"points below the Keras model's {results['keras']['accuracy']:.4f}, "
                          f"{100 * (drop - params.int8_max_accuracy_drop):.2f} points more "
                          f"than export.int8_max_accuracy_drop "
                          f"({params.int8_max_accuracy_drop:g}) allows")
        ratio = row["size_ratio"]
        if not ratio <= params.int8_max_size_ratio:
            misses.append(f"{INT8} is {ratio:.3f}x the size of the .keras file, "
                          f"{ratio - params.int8_max_size_ratio:.3f}x over "
                          f"export.int8_max_size_ratio ({params.int8_max_size_ratio:g}x)")
    return misses
