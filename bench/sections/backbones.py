"""Section 9: training throughput of each backbone beside the default one's."""

from __future__ import annotations

from bench.context import Bench
from bench.fitting import compiled_cnn, timed_epoch, warm_up
from bench.framework import Figure
from bench.runner import log
from imgclf.params import BACKBONES

# Section 9: the backbone every other one is compared with (the default model.arch), and
# (pixels, batch, timed steps) of the full and the --quick run.
BACKBONE_REFERENCE = "mobilenet_v2"
BACKBONE_RUN = {False: (224, 16, 3), True: (32, 4, 1)}
BACKBONES_QUICK = ("mobilenet_v2", "mobilenet_v3_small")  # --quick checks the mechanics only


def backbone_rate(arch: str, size: int, batch: int, steps: int) -> tuple[float, int]:
    """(training images/s, backbone parameters) of ``arch``: random weights, every layer training.

    Set up and compiled as the train stage does (``compiled_cnn``), fed ``steps`` batches
    of random pixels from memory, so only the model's compute is timed; one batch is
    fitted first (tracing), as in section 1.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 3, len(x))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)  # in memory already
    model = compiled_cnn(arch, size, 3, steps)
    warm_up(model, ds)
    from imgclf.models.architectures import BACKBONE

    return timed_epoch(model, ds, len(x)), model.get_layer(BACKBONE).count_params()


def section_backbones(bench: Bench) -> list[Figure]:
    """Section 9: each backbone's training images/s beside the default mobilenet_v2's."""

    size, batch, steps = BACKBONE_RUN[bench.quick]
    archs = BACKBONES_QUICK if bench.quick else BACKBONES
    rates = {}
    for arch in archs:
        log(f"backbones: {arch} at {size} px")
        rates[arch] = backbone_rate(arch, size, batch, steps)
    reference = rates[BACKBONE_REFERENCE][0]
    return [Figure("9 backbones", f"train {arch} {size}px", rate, reference, "img/s",
                   note=f"backbone {params / 1e6:.1f} M parameters; random weights, every layer "
                   f"training, batch {batch}, {steps} steps after 1; reference "
                   f"{BACKBONE_REFERENCE} (alpha 0.5)")
            for arch, (rate, params) in rates.items()]
