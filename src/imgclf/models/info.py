"""What a model file must carry to be used alone: its class names and image size.

Kept apart from ``saving`` (which imports Keras) so that the runtimes of exported
formats (``imgclf.inference.runtimes``) can read it without loading TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

INFO_NAME = "imgclf.json"  # its name inside a .keras file and a SavedModel's assets.extra/


@dataclass(frozen=True)
class ModelInfo:
    class_names: list[str]
    image_size: int

    def to_json(self) -> str:
        return json.dumps({"class_names": self.class_names, "image_size": self.image_size})

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelInfo:
        """Parse :meth:`to_json`'s text; ``ValueError`` (or ``KeyError``) if it is not that."""
        raw: Any = json.loads(text)
        return cls(class_names=[str(c) for c in raw["class_names"]],
                   image_size=int(raw["image_size"]))
