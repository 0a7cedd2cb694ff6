"""Section 5: peak memory of split and train at 10x the images vs at 1x."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import Bench, write_params
from bench.framework import Figure, Target
from bench.photos import copy_subset, count_images, make_variants
from bench.runner import ChildRun, imgclf_cmd, log, mirror_dir, run_child
from imgclf.params import merge

MEMORY_TARGET = 1.25  # section 5: peak RSS at 10x the images / at 1x
VARIANTS = 10  # section 5: generated copies of each photo for the large set


def stage_memory(bench: Bench, raw: Path, tag: str) -> tuple[ChildRun, ChildRun]:
    """Peak memory of ``imgclf split`` then ``imgclf train`` (small, 1 epoch) on ``raw``."""
    work = bench.work / f"memory-{tag}"
    work.mkdir()
    params = merge(bench.repo_params(), {"data": {"image_size": bench.size},
                                         "model": {"arch": "small"}, "train": {"epochs": 1}})
    write_params(work / "params.yaml", params)
    p = ["--params", str(work / "params.yaml")]
    log(f"memory: imgclf split of {tag} images")
    split = run_child(imgclf_cmd("split", *p, "--raw", str(raw), "--out", "prepared"), work,
                      poll_s=0.05, what="imgclf split")
    log(f"memory: imgclf train on {tag} images")
    train = run_child(imgclf_cmd("train", *p, "--data", "prepared", "--model", "model.keras",
                                 "--live", "live"), work, poll_s=0.05, what="imgclf train")
    shutil.rmtree(work / "prepared")
    return split, train


def section_memory(bench: Bench) -> list[Figure]:
    """Section 5: peak RSS of split and train at 10x the images vs at 1x."""
    if bench.quick:
        small = copy_subset(mirror_dir(), bench.work / "memory-photos", 100)
        large = mirror_dir()
    else:
        small = mirror_dir()
        log(f"memory: generating {VARIANTS} variants of each photo")
        large = make_variants(small, bench.work / "memory-variants", VARIANTS)
    n_small, n_large = count_images(small), count_images(large)
    runs_small = stage_memory(bench, small, str(n_small))
    runs_large = stage_memory(bench, large, str(n_large))
    figures = []
    for stage, a, b in zip(("split", "train"), runs_small, runs_large, strict=True):
        note = (f"tree RSS summed over processes; without shared/file pages "
                f"{b.peak_private_mb:.0f} vs {a.peak_private_mb:.0f} MB; "
                f"{b.seconds:.0f} s vs {a.seconds:.0f} s")
        figures.append(Figure("5 memory", f"{stage} peak RSS, {n_large} vs {n_small} images",
                              b.peak_rss_mb, a.peak_rss_mb, "MB", Target("<=", MEMORY_TARGET),
                              note))
    return figures
