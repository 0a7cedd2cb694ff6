"""Section 14: the features stage at scale: peak memory (and time, bytes) at 10x the images.

The stage streams every split through the frozen backbone a batch at a time and writes
its ``.npy`` files block after block, so its memory must not grow with the image count
(issue 23 §5). Measured at a small image size (``FEATURES_SIZE``, MobileNetV2 alpha
0.35), where 30,000 images take minutes rather than hours on 2 cores: the size changes
the per-batch memory, not its growth with the count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import Bench, write_params
from bench.framework import Figure, Target
from bench.photos import copy_subset, count_images, folder_bytes, make_variants
from bench.runner import ChildRun, imgclf_cmd, log, mirror_dir, run_child
from imgclf.params import merge

FEATURES_MEMORY_TARGET = 1.25  # section 14: features peak RSS at 10x the images / at 1x
FEATURES_SIZE = 48  # pixels a side (32 with --quick)
VARIANTS = 10  # generated copies of each photo for the large set (as section 5)


def features_run(bench: Bench, raw: Path, tag: str) -> tuple[ChildRun, int]:
    """``imgclf split`` then (polled) ``imgclf features`` of ``raw`` in child processes:
    the features run and the bytes of its output."""
    work = bench.work / f"features-memory-{tag}"
    work.mkdir()
    size = 32 if bench.quick else FEATURES_SIZE
    params = merge(bench.repo_params(), {"data": {"image_size": size},
                                         "model": {"arch": "mobilenet_v2", "alpha": 0.35},
                                         "wandb": {"enabled": False}})
    write_params(work / "params.yaml", params)
    p = ["--params", str(work / "params.yaml")]
    log(f"features memory: split and pretrained for {tag} images at {size} px")
    run_child(imgclf_cmd("split", *p, "--raw", str(raw), "--out", "prepared"), work,
              what="imgclf split")
    run_child(imgclf_cmd("pretrained", *p, "--out", "pretrained"), work, what="pretrained")
    log(f"features memory: imgclf features on {tag} images (polled)")
    run = run_child(imgclf_cmd("features", *p, "--data", "prepared", "--pretrained",
                               "pretrained", "--out", "features"), work, poll_s=0.05,
                    what="imgclf features")
    size_bytes = folder_bytes(work / "features")
    shutil.rmtree(work)
    return run, size_bytes


def section_features_memory(bench: Bench) -> list[Figure]:
    """Section 14: features stage peak RSS on 10x the images vs 1x (30,000 vs 3,000)."""
    if bench.quick:
        small = copy_subset(mirror_dir(), bench.work / "features-memory-photos", 100)
        large = mirror_dir()
    else:
        small = mirror_dir()
        large = bench.work / "memory-variants"  # section 5's, when it ran before
        if not large.is_dir():
            log(f"features memory: generating {VARIANTS} variants of each photo")
            make_variants(small, large, VARIANTS)
    n_small, n_large = count_images(small), count_images(large)
    a, bytes_a = features_run(bench, small, str(n_small))
    b, bytes_b = features_run(bench, large, str(n_large))
    size = 32 if bench.quick else FEATURES_SIZE
    return [
        Figure("14 features", f"features peak RSS, {n_large} vs {n_small} images",
               b.peak_rss_mb, a.peak_rss_mb, "MB", Target("<=", FEATURES_MEMORY_TARGET),
               f"{size} px, alpha 0.35; without shared/file pages {b.peak_private_mb:.0f} vs "
               f"{a.peak_private_mb:.0f} MB; {b.seconds:.0f} s vs {a.seconds:.0f} s"),
        Figure("14 features", f"data/features bytes an image, {n_large} vs {n_small} images",
               bytes_b / n_large, bytes_a / n_small, "B", None,
               f"{bytes_b / 1e6:.0f} MB vs {bytes_a / 1e6:.1f} MB at {size} px"),
    ]
