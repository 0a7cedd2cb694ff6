"""Which pinned ImageNet weights each backbone starts from, and where train finds them.

The table the ``pretrained`` stage fetches by and ``train`` loads from; no network code
here, so a change to how weights are fetched does not retrain the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import UserError
from imgclf.params import BACKBONES, ModelParams

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
NO_WEIGHTS = "NONE.txt"  # written instead when the model needs no pretrained weights


@dataclass(frozen=True)
class PinnedWeights:
    filename: str  # Keras' own name for the file, as in its cache
    digest: str  # the hash Keras pins for it (md5 or sha256, told apart by length as Keras does)
    folder: str = ""  # its folder under KERAS_URL

    @property
    def url(self) -> str:
        return KERAS_URL + self.folder + self.filename

    @property
    def algorithm(self) -> str:
        return "sha256" if len(self.digest) == 64 else "md5"


# (arch, alpha or None) -> the no-top ImageNet weights Keras publishes for it, with the
# hash Keras pins in keras/src/applications/<family>.py (WEIGHTS_HASHES; Keras pins
# none for MobileNetV2, so those are the sha256 of the files it serves).
# tests/models/test_pretrained.py checks this table against the installed Keras.
PINNED: dict[tuple[str, float | None], PinnedWeights] = {
    ("mobilenet_v2", 0.35): PinnedWeights(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
        "df1c3db1d0d9193719c4c70f707c56f7021f999f825bdc57454c275cf6def19f", "mobilenet_v2/"),
    ("mobilenet_v2", 0.5): PinnedWeights(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
        "279052de2cfa801003aa6cc25cc4d007d35dd0b76f06935268c79788b7642d05", "mobilenet_v2/"),
    ("mobilenet_v3_small", None): PinnedWeights(
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        "d3e8ec802a04aa4fc771ee12a9a9b836", "mobilenet_v3/"),
    ("mobilenet_v3_large", None): PinnedWeights(
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        "07fb09a5933dd0c8eaafa16978110389", "mobilenet_v3/"),
    ("efficientnetv2_b0", None): PinnedWeights(
        "efficientnetv2-b0_notop.h5", "893217f2bb855e2983157299931e43ff", "efficientnet_v2/"),
    ("efficientnetv2_s", None): PinnedWeights(
        "efficientnetv2-s_notop.h5", "af0682fb74e8c54910f2d4393339c070", "efficientnet_v2/"),
    ("resnet50_v2", None): PinnedWeights(
        "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "fac2f116257151a9d068a22e544a4917", "resnet/"),
    ("convnext_tiny", None): PinnedWeights(
        "convnext_tiny_notop.h5",
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1", "convnext/"),
}
# The archs whose width model.alpha sets (the others have one pinned width).
WIDTH_ARCHS = frozenset({"mobilenet_v2"})


def pinned_for(model: ModelParams) -> PinnedWeights | None:
    """The weights ``model`` starts from, or None for a model trained from scratch."""
    if model.arch not in BACKBONES or not model.pretrained:
        return None
    alpha = model.alpha if model.arch in WIDTH_ARCHS else None
    return PINNED[(model.arch, alpha)]  # params validation allows only pinned alphas


def weights_path(model: ModelParams, folder: str | os.PathLike[str]) -> Path | None:
    """Where the pretrained stage put the weights of ``model`` inside ``folder``."""
    pinned = pinned_for(model)
    if pinned is None:
        return None
    path = Path(folder) / pinned.filename
    if not path.is_file():
        raise UserError(f"{path}: missing; run the pretrained stage (dvc repro pretrained)")
    return path
