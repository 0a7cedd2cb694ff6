"""Photo folders for the sections: the real photos' classes, subsets and generated variants."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
from pathlib import Path

from imgclf.data.layout import has_image_suffix


def class_files(root: Path) -> dict[str, list[Path]]:
    """Image files of each class sub-folder of ``root``, sorted."""
    return {d.name: sorted(p for p in d.iterdir() if has_image_suffix(p.name))
            for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def copy_subset(src: Path, dest: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` photos of each class of ``src`` to ``dest``."""
    for name, files in class_files(src).items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for path in files[:per_class]:
            shutil.copy2(path, dest / name / path.name)
    return dest


def count_images(root: Path) -> int:
    return sum(len(files) for files in class_files(root).values())



def _make_variant(job: tuple[str, str, int]) -> None:
    """Write a flipped/cropped, re-encoded copy of a photo (a worker of ``make_variants``)."""
    from PIL import Image, ImageOps

    src, dest, seed = job
    rng = random.Random(seed)
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    if seed % 2:
        rgb = ImageOps.mirror(rgb)
    w, h = rgb.size
    scale = rng.uniform(0.75, 0.95)
    cw, ch = int(w * scale), int(h * scale)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    rgb.crop((x, y, x + cw, y + ch)).save(dest, "JPEG", quality=rng.randint(70, 95))


def make_variants(src: Path, dest: Path, copies: int) -> Path:
    """``copies`` generated variants of every photo of ``src`` under ``dest``, on all cores."""
    jobs = []
    for name, files in class_files(src).items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files):
            jobs += [(str(path), str(dest / name / f"{path.stem}_v{k}.jpg"), i * copies + k)
                     for k in range(copies)]
    workers = len(os.sched_getaffinity(0))
    # spawn: this process may hold TensorFlow's threads by now.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_make_variant, jobs, chunksize=64):
            pass
    return dest



def folder_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
