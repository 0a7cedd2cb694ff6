"""``imgclf predict --explain DIR``: each image beside its heatmap, one PNG per file.

The names (:func:`png_name`) hold the file's stem and a digest of its absolute path, so
two inputs never share one (``a/cat.jpg`` and ``b/cat.jpg``), and ``DIR/index.csv``
says which PNG is which file. Heatmaps need gradients, so only a ``.keras`` model can
be explained; :func:`check_explainable` says so in one line before any work.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf import fsutil
from imgclf.errors import UserError
from imgclf.inference.explain import explainer, heatmaps, side_by_side

MIN_SIDE = 224
"""A PNG is scaled up (by a whole factor) to at least this many pixels high."""
INDEX = "index.csv"


def enlarged(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """``image`` (H, W, 3) uint8 scaled up by a whole factor to at least ``min_side``
    pixels a side (nearest neighbour: the model's pixels stay visible as they were)."""
    factor = max(1, -(-min_side // max(1, min(image.shape[:2]))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def png_name(path: str | os.PathLike[str]) -> str:
    """The file name of ``path``'s heatmap: its stem, then 10 hex digits of the SHA-256
    of its absolute path: two inputs with one base name in different folders differ."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:10]
    # Letters, digits, dot, dash and underscore only: a safe name on every file system.
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem)[:60]
    return f"{stem}-{digest}.png"


def unique_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """:func:`png_name` of each path; should two different files' digests ever agree,
    the later gets ``-2``, ``-3``... (the same file named twice keeps its one name)."""
    owner: dict[str, str] = {}
    names = []
    for path in paths:
        name, key, n = png_name(path), os.path.abspath(path), 1
        while owner.setdefault(name, key) != key:
            n += 1
            name = f"{png_name(path)[:-4]}-{n}.png"
        names.append(name)
    return names


def write_png(image: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write ``image`` (H, W, 3) uint8 as a PNG file, atomically."""
    with fsutil.atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


# --- imgclf predict --explain -----------------------------------------------------------


def check_explainable(model_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """UserError (one line) unless ``model_path`` is a ``.keras`` file and ``out`` a folder
    that can be made; checked before predict does any work."""
    from imgclf.inference.runtimes import KERAS, model_format

    fmt = model_format(model_path)
    if fmt is not KERAS:
        raise UserError(f"--explain needs the Keras model (a .keras file, e.g. "
                        f"models/model.keras): the heatmaps take gradients, which a "
                        f"{fmt.label} model does not give; {model_path} is one")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--explain {out}: cannot make that folder ({exc.strerror})") from None


def explain_files(model_path: str | os.PathLike[str], paths: Sequence[Path],
                  classes: Sequence[int], out: str | os.PathLike[str], batch_size: int = 32,
                  allow_unsafe: bool = False) -> list[Path]:
    """Write, for each file of ``paths``, the picture and its heatmap for ``classes[i]``
    side by side into ``out`` (named by :func:`png_name`), and ``out/index.csv`` (file,
    png, class name); the PNGs written, in order."""
    from imgclf.data.images import load_image
    from imgclf.models.saving import load_model

    model, info = load_model(model_path, allow_unsafe=allow_unsafe)
    parts = explainer(model)
    written: list[Path] = []
    names = unique_names(paths)
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        pixels = np.stack([load_image(p, info.image_size) for p in chunk])
        heat = heatmaps(model, pixels, classes[start:start + batch_size], parts=parts)
        for image, h in zip(pixels, heat, strict=True):
            written.append(Path(out) / names[len(written)])
            write_png(enlarged(side_by_side(image, h)), written[-1])
    buf = io.StringIO()
    rows = csv.writer(buf, lineterminator="\n")
    rows.writerow(["path", "png", "class"])
    for path, png, c in zip(paths, written, classes, strict=True):
        rows.writerow([str(path), png.name, info.class_names[c]])
    fsutil.write_text(Path(out) / INDEX, buf.getvalue())
    return written
