"""Section 7: each export format's size, latency and throughput beside the Keras model's."""

from __future__ import annotations

from bench.context import Bench
from bench.framework import Figure, Target
from bench.photos import class_files, copy_subset, count_images
from bench.runner import log, mirror_dir, quiet_stdout

EXPORT_PER_CLASS = (20, 100)  # section 7: photos a class split for it (--quick, full)
EXPORT_RUNS = (20, 100)  # section 7: single-image calls timed per format (--quick, full)


def section_export(bench: Bench) -> list[Figure]:
    """Section 7: each export format's size, single-image latency and batch throughput
    beside the Keras model's, all on the same test images in this run.

    The model is the default params' architecture at its image size (``small`` at 64 px
    with --quick), untrained: sizes and speeds do not depend on the weights' values,
    and accuracy and agreement are the export stage's own checks (metrics/export.json).
    """
    from imgclf.data import split
    from imgclf.data.shards import read_split
    from imgclf.export.bounds import within_int8_size_ratio
    from imgclf.export.formats import FORMATS, REFERENCE, write_format
    from imgclf.export.representative import representative_images
    from imgclf.export.scoring import predict_timed, single_image_latency_ms
    from imgclf.export.stage import size_bytes
    from imgclf.inference.runtimes import keras_runtime, load_runtime
    from imgclf.models.architectures import build_model
    from imgclf.models.saving import ModelInfo, save_model
    from imgclf.params import DataParams, ModelParams, params_from_dict

    params = params_from_dict(bench.repo_params())
    model_params = ModelParams(arch="small") if bench.quick else \
        params.model.model_copy(update={"pretrained": False})
    size = 64 if bench.quick else params.data.image_size
    per_class, runs = EXPORT_PER_CLASS[not bench.quick], EXPORT_RUNS[not bench.quick]
    work = bench.work / "export"
    photos = copy_subset(mirror_dir(), work / "photos", per_class)
    log(f"export: splitting {count_images(photos)} photos at {size} px")
    with quiet_stdout():
        split.run(DataParams(image_size=size), params.split, photos, work / "prep")
    images, _ = read_split(work / "prep", "test")
    names = sorted(class_files(photos))
    model = build_model(model_params, size, len(names))
    info = ModelInfo(names, size)
    save_model(model, work / "model.keras", info)
    export = params.export  # the repo's export.* (formats, batch size, calibration)
    batch = export.batch_size
    runtimes = {REFERENCE: keras_runtime(model, info, work / "model.keras")}
    representative = representative_images(work / "prep", export.int8_samples)
    for fmt in export.formats:
        log(f"export: writing {fmt}")
        with quiet_stdout():
            runtimes[fmt] = load_runtime(write_format(fmt, model, info, work / "out",
                                                      representative))
    measured = {}
    for fmt, runtime in runtimes.items():
        log(f"export: timing {fmt} on {len(images)} test images")
        _, rate = predict_timed(runtime, images, batch)
        p50, p95 = single_image_latency_ms(runtime, images, runs)
        measured[fmt] = (size_bytes(runtime.path) / 1e6, p50, p95, rate)
    k_mb, k_p50, _, k_rate = measured[REFERENCE]
    what = f"{model_params.arch} at {size} px"
    figures = []
    for fmt, (mb, p50, p95, rate) in measured.items():
        if fmt == REFERENCE:
            continue
        target = Target("<=", export.int8_max_size_ratio) \
            if within_int8_size_ratio in FORMATS[fmt].bounds else None
        figures += [
            Figure("7 export", f"{fmt} size vs .keras ({what})", mb, k_mb, "MB", target,
                   "the .keras file is saved uncompiled (no optimizer state)"),
            Figure("7 export", f"{fmt} single-image latency (median) vs Keras", p50, k_p50,
                   "ms", note=f"p95 {p95:.2f} ms; {runs} calls"),
            Figure("7 export", f"{fmt} batch throughput vs Keras", rate, k_rate, "img/s",
                   note=f"batches of {batch}, {len(images)} test images"),
        ]
    return figures
