"""The run's settings and the inputs several sections share (made on first use)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from bench.photos import copy_subset
from bench.runner import REPO, SHARED, log, mirror_dir, quiet_stdout

DEFAULT_BASELINE = SHARED / "bench" / "naive_keras.py"
# Section 6 times the default pipeline and the from-scratch recipe.
DEFAULT_PARAMS = (REPO / "params.yaml", REPO / "recipes" / "from-scratch.yaml")
ARCHS = ("small", "medium", "large")
SCALE_N = 100_000  # section 11: generated images split (--scale-n)


@dataclass
class Bench:
    """Settings of one run and the inputs several sections share (made on first use)."""

    quick: bool
    work: Path  # scratch folder, removed at the end
    baseline: Path
    repeats: int = 1
    archs: tuple[str, ...] = ARCHS
    params_files: list[Path] = field(default_factory=lambda: list(DEFAULT_PARAMS))
    batch: int = 32
    scale_n: int = SCALE_N

    @property
    def size(self) -> int:
        """Pixels a side for sections 1-3 and 5."""
        return 64 if self.quick else 128

    @cached_property
    def photos(self) -> Path:
        """The real photos of sections 1-3: all of them, or 30 a class with --quick."""
        if not self.quick:
            return mirror_dir()
        return copy_subset(mirror_dir(), self.work / "photos", 30)

    @cached_property
    def prepared(self) -> Path:
        """The split stage's shards of ``photos`` (sections 1 and 2)."""
        from imgclf.data import split
        from imgclf.params import DataParams, SplitParams

        out = self.work / "prepared"
        log(f"splitting {self.photos} at {self.size} px for the training figures")
        with quiet_stdout():
            split.run(DataParams(image_size=self.size), SplitParams(), self.photos, out)
        return out

    def repo_params(self) -> dict[str, Any]:
        return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")) or {}



def write_params(path: Path, params: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
