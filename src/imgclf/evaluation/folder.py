"""``imgclf evaluate --data FOLDER``: score the model on any folder of class sub-folders,
outside the pipeline, with the evaluate stage's metrics and plots.

No stage runs this: it reads image files as ``imgclf predict`` does, so it lives apart
from :mod:`imgclf.evaluation.evaluate`, whose stage then does not depend on predict's
code. The CLI imports this module for its default paths before it validates params,
so the scoring code is imported inside the functions that run it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.errors import UserError
from imgclf.params import EvaluateParams

if TYPE_CHECKING:
    import numpy as np

FOLDER_KEY = "folder"  # the metrics are nested under this key
FOLDER_METRICS = "metrics/folder/eval.json"  # the default outputs, untracked
FOLDER_PLOTS = "metrics/folder/plots"
FOLDER_PREDICTIONS = "metrics/folder/predictions.csv"


def run_folder(params: EvaluateParams, folder: str | os.PathLike[str],
               model_path: str | os.PathLike[str],
               metrics_path: str | os.PathLike[str] = FOLDER_METRICS,
               plots_dir: str | os.PathLike[str] = FOLDER_PLOTS,
               predictions: str | os.PathLike[str] = FOLDER_PREDICTIONS,
               allow_unsafe_model: bool = False,
               unknown_threshold: float | None = None) -> None:
    """Score the model on ``folder``'s class sub-folders (any image set, not only a split).

    Images are prepared as for training (``load_image`` at the model's image size);
    sub-folders are matched by name to the model's classes. The metrics, nested under
    ``"folder"``, the plots and the predictions CSV (split ``folder``, each file's path
    as found) are those of the evaluate stage; the metrics count the images flagged
    unknown (above ``unknown_threshold``, else the model file's OOD threshold).
    """
    import numpy as np

    from imgclf import fsutil
    from imgclf.evaluation.evaluate import (
        print_summary,
        split_metrics,
        unknown_counts,
        write_plots,
    )
    from imgclf.evaluation.predictions import write_predictions
    from imgclf.inference.predict import score_paths
    from imgclf.inference.runtimes import load_runtime, read_runtime_info

    folder = Path(folder)
    paths, labels = labelled_images(folder, read_runtime_info(model_path).class_names)
    model = load_runtime(model_path, allow_unsafe=allow_unsafe_model)  # any format
    info = model.info
    probs, scores, errors = score_paths(model, paths, info.image_size, params.batch_size,
                                        params.tta)
    ok = [i for i, e in enumerate(errors) if e is None]
    failed = [(paths[i], e) for i, e in enumerate(errors) if e is not None]
    for path, error in failed:
        print(f"evaluate: skipped {path}: {error}", file=sys.stderr)
    if not ok:
        raise UserError(f"{folder}: none of the {len(paths)} image files could be read")
    kept = [paths[i] for i in ok]
    y_true, probs = np.asarray(labels, dtype=np.int64)[ok], probs[ok].astype(np.float64)
    metrics = {FOLDER_KEY: split_metrics(y_true, probs, info.class_names) | unknown_counts(
        None if scores is None else scores[ok], info.unknown_threshold(unknown_threshold))}
    images = _LazyImages(kept, info.image_size)
    files = [str(path) for path in kept]
    plotted = write_plots(plots_dir, y_true, probs, info.class_names, images,
                          folder.name or str(folder), files=files)
    write_predictions(predictions, files, y_true, probs, info.class_names, FOLDER_KEY)
    fsutil.write_json(metrics_path, metrics)
    print_summary(metrics, metrics_path, plotted.confused, skipped=len(failed))


def labelled_images(folder: Path, class_names: Sequence[str]) -> tuple[list[Path], list[int]]:
    """The image files of ``folder/<class>/`` (recursively) and their class indices.

    Files are found as ``imgclf predict`` finds them in a folder (image extensions, no
    hidden files). A sub-folder whose name is not a class of the model is an error.
    """
    from imgclf.data.layout import class_dirs
    from imgclf.inference.predict import find_images

    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; give a prepared split (data/prepared) or "
                        "a folder with one sub-folder of images per class")
    subfolders = class_dirs(folder)
    unknown = [p.name for p in subfolders if p.name not in class_names]
    if unknown:
        raise UserError(f"{folder}: class folder(s) {', '.join(unknown)} are not classes of "
                        f"the model ({', '.join(class_names)}); rename or remove them")
    paths: list[Path] = []
    labels: list[int] = []
    for sub in subfolders:
        files = find_images([sub])
        paths += files
        labels += [list(class_names).index(sub.name)] * len(files)
    if not paths:
        raise UserError(f"{folder}: no image files in class sub-folders "
                        f"({', '.join(class_names)})")
    return paths, labels


class _LazyImages:
    """``images[i]``: the i-th file decoded on demand (the gallery needs only a few)."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __getitem__(self, i: int) -> np.ndarray:
        from imgclf.data.images import load_image

        return load_image(self.paths[i], self.size)

    def __len__(self) -> int:
        return len(self.paths)
