"""Section 11: the split stage at scale: images/s, peak memory and bytes as the images grow."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import Bench, write_params
from bench.framework import Figure, Target
from bench.photos import copy_subset, count_images, folder_bytes, make_variants
from bench.runner import ChildRun, imgclf_cmd, log, mirror_dir, run_child
from bench.sections.tfrecord import PREPARED_BYTES_TARGET
from imgclf.params import merge

SCALE_MEMORY_TARGET = 1.25  # section 11: split peak RSS at SCALE_N / at the 3,000 photos


def scale_run(bench: Bench, raw: Path, tag: str) -> tuple[ChildRun, int]:
    """``imgclf split`` of ``raw`` with the repo's params (its size, the default encoding) in
    a child process: the run (with peak RSS) and the prepared folder's bytes."""
    work = bench.work / f"scale-{tag}"
    work.mkdir()
    params = bench.repo_params()
    if bench.quick:
        params = merge(params, {"data": {"image_size": 64}})
    write_params(work / "params.yaml", params)
    log(f"scale: imgclf split of {tag} images")
    run = run_child(imgclf_cmd("split", "--params", str(work / "params.yaml"), "--raw", str(raw),
                               "--out", "prepared"), work, poll_s=0.1, what="imgclf split")
    prepared = folder_bytes(work / "prepared")
    shutil.rmtree(work)
    return run, prepared


def section_scale(bench: Bench) -> list[Figure]:
    """Section 11: split of ``--scale-n`` generated images vs the 3,000 photos: images/s,
    peak RSS and prepared bytes / source bytes, so the growth of each cost is visible."""
    small = copy_subset(mirror_dir(), bench.work / "scale-photos", 100) if bench.quick \
        else mirror_dir()
    n_small = count_images(small)
    copies = max(1, -(-bench.scale_n // n_small))
    log(f"scale: generating {copies} variants of each of {n_small} photos")
    large = make_variants(small, bench.work / "scale-variants", copies)
    n_large = count_images(large)
    figures = []
    results = {}
    for tag, raw, n in (("small", small, n_small), ("large", large, n_large)):
        run, prepared = scale_run(bench, raw, str(n))
        results[tag] = (run, prepared, folder_bytes(raw), n)
    (a, pa, sa, na), (b, pb, sb, nb) = results["small"], results["large"]
    figures.append(Figure("11 scale", f"split img/s, {nb} vs {na} images", nb / b.seconds,
                          na / a.seconds, "img/s", None,
                          f"{b.seconds:.0f} s vs {a.seconds:.0f} s, all cores"))
    figures.append(Figure("11 scale", f"split peak RSS, {nb} vs {na} images", b.peak_rss_mb,
                          a.peak_rss_mb, "MB", Target("<=", SCALE_MEMORY_TARGET),
                          f"without shared/file pages {b.peak_private_mb:.0f} vs "
                          f"{a.peak_private_mb:.0f} MB"))
    for n, prepared, source in ((nb, pb, sb), (na, pa, sa)):
        figures.append(Figure("11 scale", f"prepared / source bytes, {n} images",
                              prepared / 1e6, source / 1e6, "MB",
                              Target("<=", PREPARED_BYTES_TARGET) if not bench.quick else None,
                              f"{prepared / n / 1e3:.1f} KB prepared per image"))
    return figures
