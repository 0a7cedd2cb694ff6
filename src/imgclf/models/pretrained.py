"""The pretrained stage: pinned ImageNet weights of a backbone -> data/pretrained/.

Weights are an input like the data, so they get a stage of their own: DVC hashes the
file and ``train`` depends on it. Each file is looked up first in Keras' own cache
(``$KERAS_HOME/models/``, default ``~/.keras/models/``), then fetched from Keras'
official URL, and must match its pinned sha256 either way.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from imgclf import env
from imgclf.errors import UserError
from imgclf.fetch import fetch_url
from imgclf.fsutil import atomic_dir, sha256_file
from imgclf.params import ModelParams

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
NO_WEIGHTS = "NONE.txt"  # written instead when the model needs no pretrained weights


@dataclass(frozen=True)
class PinnedWeights:
    filename: str  # Keras' own name for the file, as in its cache
    sha256: str

    @property
    def url(self) -> str:
        return KERAS_URL + self.filename


# (arch, alpha) -> the no-top ImageNet weights Keras publishes for it.
PINNED: dict[tuple[str, float], PinnedWeights] = {
    ("mobilenet_v2", 0.35): PinnedWeights(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
        "df1c3db1d0d9193719c4c70f707c56f7021f999f825bdc57454c275cf6def19f"),
    ("mobilenet_v2", 0.5): PinnedWeights(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
        "279052de2cfa801003aa6cc25cc4d007d35dd0b76f06935268c79788b7642d05"),
}


def pinned_for(model: ModelParams) -> PinnedWeights | None:
    """The weights ``model`` starts from, or None for a model trained from scratch."""
    if model.arch != "mobilenet_v2" or not model.pretrained:
        return None
    return PINNED[(model.arch, model.alpha)]  # params validation allows only pinned alphas


def weights_path(model: ModelParams, folder: str | os.PathLike[str]) -> Path | None:
    """Where the pretrained stage put the weights of ``model`` inside ``folder``."""
    pinned = pinned_for(model)
    if pinned is None:
        return None
    path = Path(folder) / pinned.filename
    if not path.is_file():
        raise UserError(f"{path}: missing; run the pretrained stage (dvc repro pretrained)")
    return path


def keras_cache() -> Path:
    """Keras' cache of downloaded weights: ``$KERAS_HOME/models`` (default ~/.keras)."""
    return Path(env.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def run(model: ModelParams, out: str | os.PathLike[str]) -> None:
    pinned = pinned_for(model)
    with atomic_dir(out) as tmp:
        if pinned is None:
            (tmp / NO_WEIGHTS).write_text(
                f"model.arch {model.arch} (pretrained: {model.pretrained}) starts from "
                "random weights\n", encoding="utf-8")
            print(f"pretrained: {model.arch} needs no pretrained weights")
            return
        dest = tmp / pinned.filename
        cached = keras_cache() / pinned.filename
        if cached.is_file():
            shutil.copyfile(cached, dest)
            origin = str(cached)
        else:
            hint = (f"put {pinned.filename} in {keras_cache()} (set KERAS_HOME to a folder "
                    "whose models/ sub-folder has it)")
            try:
                fetch_url(pinned.url, dest, hint)
            except urllib.error.HTTPError as exc:
                raise UserError(f"{pinned.url} answered HTTP {exc.code}; {hint}") from None
            origin = pinned.url
        got = sha256_file(dest)
        if got != pinned.sha256:
            raise UserError(f"{origin}: sha256 {got} is not the pinned {pinned.sha256}; "
                            "delete the file and run the stage again to fetch a good copy")
    print(f"pretrained: {pinned.filename} from {origin}, sha256 verified", file=sys.stderr)
