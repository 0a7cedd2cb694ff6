"""The targets an exported format must meet, checked on ``metrics/export.json``'s rows.

Each bound is a function ``(format name, its row, the Keras row, params) -> Miss | None``;
the table of formats (``imgclf.export.formats``) says which bounds each format has. A
miss is one sentence naming the format, the figure, the bound and by how much it was
missed; the stage joins them into its one-line error.

A *soft* miss is numeric wobble at the decision boundary, not a broken conversion: the
format keeps Keras' answers on the images Keras is confident on (``confident_agreement``
at least ``export.min_agreement``) and misses its bound only through the images Keras
itself is unsure of: it disagrees with Keras more often than ``export.min_agreement``
allows, or (int8) loses more accuracy than ``export.int8_max_accuracy_drop`` but at most
:data:`SOFT_DROP_FACTOR` times that. The stage warns of it and goes on (unless
``export.strict``). A broken conversion changes confident answers, or loses far more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imgclf.export.scoring import CONFIDENT
from imgclf.params import ExportParams

Row = Mapping[str, Any]

# An int8 accuracy drop up to this many times export.int8_max_accuracy_drop may be
# wobble (if the confident answers are kept); beyond it, it is a broken conversion. The
# brain-MRI case of issue 24: 1.07 points against a 1-point bound, answers kept wherever
# Keras is confident.
SOFT_DROP_FACTOR = 2.0


@dataclass(frozen=True)
class Miss:
    """A missed bound, in one sentence; ``soft`` when it is wobble at the decision boundary."""

    text: str
    soft: bool = False


Bound = Callable[[str, Row, Row, ExportParams], Miss | None]


def agrees_with_keras(fmt: str, row: Row, keras: Row, params: ExportParams) -> Miss | None:
    """The format gives Keras' answers on ``export.min_agreement`` of the test images: a
    hard miss when it falls short on the confident images alone, else a soft one."""
    bound = params.min_agreement
    confident = row["confident_agreement"]
    if not confident >= bound:
        return Miss(f"{fmt} agrees with the Keras model on {confident:.2%} of the test images "
                    f"it is confident on (top probability {CONFIDENT:.0%} or more), "
                    f"{100 * (bound - confident):.2f} points below export.min_agreement "
                    f"({bound:.2%})")
    agree = row["agreement"]
    if not agree >= bound:
        return Miss(f"{fmt} agrees with the Keras model on {agree:.2%} of the test images, "
                    f"{100 * (bound - agree):.2f} points below export.min_agreement "
                    f"({bound:.2%}), but on {confident:.2%} of those the Keras model is "
                    f"confident on (largest probability difference "
                    f"{row['max_prob_diff']:.3f}): wobble at the decision boundary", soft=True)
    return None


def within_int8_accuracy_drop(fmt: str, row: Row, keras: Row,
                              params: ExportParams) -> Miss | None:
    """The format's test accuracy is at most ``export.int8_max_accuracy_drop`` below Keras':
    a soft miss when the confident answers are kept (``export.min_agreement`` of them) and
    the drop is at most :data:`SOFT_DROP_FACTOR` times the bound, else a hard one."""
    drop, bound = keras["accuracy"] - row["accuracy"], params.int8_max_accuracy_drop
    if drop <= bound:
        return None
    text = (f"{fmt} test accuracy {row['accuracy']:.4f} is {100 * drop:.2f} points below "
            f"the Keras model's {keras['accuracy']:.4f}, {100 * (drop - bound):.2f} points "
            f"more than export.int8_max_accuracy_drop ({bound:g}) allows")
    confident = row.get("confident_agreement")
    if confident is None:  # not compared with Keras' answers: nothing tells it is wobble
        return Miss(text)
    if not confident >= params.min_agreement:
        return Miss(f"{text}, and it agrees with the Keras model on {confident:.2%} of the "
                    f"test images it is confident on (export.min_agreement "
                    f"{params.min_agreement:.2%})")
    if drop > SOFT_DROP_FACTOR * bound:
        return Miss(f"{text}: over {SOFT_DROP_FACTOR:g} times the bound, although it keeps "
                    f"the Keras model's confident answers")
    return Miss(f"{text}, but it agrees with the Keras model on {confident:.2%} of the test "
                f"images it is confident on (largest probability difference "
                f"{row['max_prob_diff']:.3f}): wobble at the decision boundary", soft=True)


def within_int8_size_ratio(fmt: str, row: Row, keras: Row, params: ExportParams) -> Miss | None:
    """The format's file is at most ``export.int8_max_size_ratio`` times the .keras file."""
    ratio, bound = row["size_ratio"], params.int8_max_size_ratio
    if ratio <= bound:
        return None
    return Miss(f"{fmt} is {ratio:.3f}x the size of the .keras file, {ratio - bound:.3f}x "
                f"over export.int8_max_size_ratio ({bound:g}x)")
