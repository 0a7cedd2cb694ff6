"""What a model file must carry to be used alone: its class names, image size and the
statistics and threshold of its out-of-distribution score.

Kept apart from ``saving`` (which imports Keras) so that the runtimes of exported
formats (``imgclf.inference.runtimes``) can read it without loading TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

INFO_NAME = "imgclf.json"  # its name inside a .keras file and a SavedModel's assets.extra/
SCORE_OUTPUT = "ood_score"  # the models' second output: (B,) the OOD score, higher = stranger


@dataclass(frozen=True)
class OodInfo:
    """The OOD score a model computes in-graph, and where its threshold was fitted.

    An image is *unknown* when its score is above ``threshold``. ``threshold`` was fitted
    on ``fitted_on`` (the val split) run through the format ``fitted_with`` so that
    ``keep_rate`` of those images stay below it; ``stats`` are the scores there
    (``n``, ``mean``, ``std``, ``p50``, ``p95``, ``p99``, ``max``).
    """

    method: str
    threshold: float
    keep_rate: float
    fitted_on: str
    fitted_with: str
    stats: dict[str, float]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OodInfo:
        return cls(method=str(raw["method"]), threshold=float(raw["threshold"]),
                   keep_rate=float(raw["keep_rate"]), fitted_on=str(raw["fitted_on"]),
                   fitted_with=str(raw["fitted_with"]),
                   stats={str(k): float(v) for k, v in raw["stats"].items()})


@dataclass(frozen=True)
class ModelInfo:
    class_names: list[str]
    image_size: int
    ood: OodInfo | None = None  # None: a model from before the OOD score (no 2nd output)

    def to_json(self) -> str:
        raw: dict[str, Any] = {"class_names": self.class_names, "image_size": self.image_size}
        if self.ood is not None:
            raw["ood"] = asdict(self.ood)
        return json.dumps(raw)

    def unknown_threshold(self, override: float | None = None) -> float | None:
        """The OOD threshold to flag with: ``override`` (``--unknown-threshold`` or
        ``ood.threshold``), else the one fitted for this file; None without a score."""
        if self.ood is None:
            return None
        return self.ood.threshold if override is None else override

    def with_ood(self, ood: OodInfo | None) -> ModelInfo:
        """This info with ``ood`` (e.g. the threshold fitted for one export format)."""
        return replace(self, ood=ood)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelInfo:
        """Parse :meth:`to_json`'s text; ``ValueError`` (or ``KeyError``) if it is not that."""
        raw: Any = json.loads(text)
        ood = raw.get("ood")
        return cls(class_names=[str(c) for c in raw["class_names"]],
                   image_size=int(raw["image_size"]),
                   ood=OodInfo.from_dict(ood) if ood is not None else None)
