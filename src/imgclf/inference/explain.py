"""Why the model decided: class-activation heatmaps of a Keras classifier, and overlays.

:func:`heatmaps` computes, for each image of a batch, where in the picture the evidence
for one class (by default the predicted one) lies, as an ``(H, W)`` map in [0, 1] at
the image's size. Two gradient methods on the last spatial feature map ``A`` (``(h, w,
k)``, the input of the model's global pooling or flatten) and the class's logit ``y``
(the softmax head's input times its kernel, plus bias: a probability saturates at 1.0
and its gradient vanishes):

* ``"gradcam"`` (Selvaraju et al., 2017): ``relu(sum_k mean_hw(dy/dA_k) * A_k)``;
* ``"hirescam"`` (Draelos & Carin, 2020): ``relu(sum_k dy/dA_k * A_k)``, the gradient
  kept per position. It is the class activation map exactly when global average
  pooling and one dense layer follow ``A`` (the backbone archs and ``compact``, where
  both methods give the same map), and is the better-founded one after a flatten and
  dense layers (``small``/``medium``/``large``), where averaging the gradient throws
  away which position each weight reads.

:data:`METHOD` is the default, chosen by measurement, not by that argument: on the
generated corner-square set of ``tests/inference/test_explain.py`` the small CNN's
Grad-CAM puts more of its mass in the square's quadrant than HiResCAM, which also
credits the noise around the square (every positive product survives its relu); the
backbone archs give the same map either way (docs/predict.md, "Why it decided").

The feature map is found generically (:func:`feature_path`): the last layer whose
output is a spatial ``(B, h, w, k)`` tensor, looked for inside a nested sub-model too
(the Keras Applications backbones are one, named ``backbone``), so it works for every
``model.arch`` and for a model a user assembled. The explaining model shares the
classifier's layers (no copy of the weights).

Keras, TensorFlow and matplotlib are imported by the functions that use them, so the
evaluate stage's gallery imports this module cheaply; ``imgclf predict --explain``'s
files are written by :mod:`imgclf.inference.heatmap_files`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import keras

Method = Literal["gradcam", "hirescam"]
METHODS: tuple[Method, ...] = ("gradcam", "hirescam")
METHOD: Method = "gradcam"
"""The default method (see the module docstring for the measurement)."""
ALPHA = 0.45
"""The heatmap's opacity in :func:`overlay`."""


# --- finding the feature map -------------------------------------------------------------


def _is_spatial(layer: Any) -> bool:
    """Whether ``layer``'s output is one ``(B, h, w, k)`` tensor of more than one position."""
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # never called, or called more than once
        return False
    return len(shape) == 4 and (shape[1] or 0) * (shape[2] or 0) > 1


def _is_model(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def feature_path(model: keras.Model) -> list[Any]:
    """The layers leading to the last spatial feature map of ``model``: ``[layer]`` when
    it is one of ``model``'s own layers, ``[sub_model, ..., layer]`` inside nested ones.

    The last layer (in the model's order) whose output is spatial wins; a nested model
    whose own output is flat (a backbone with global pooling) is searched inside.
    ValueError when there is none (a model of dense layers only).
    """
    for layer in reversed(model.layers):
        if _is_spatial(layer):
            return [layer]
        if _is_model(layer):
            try:
                return [layer, *feature_path(layer)]
            except ValueError:
                continue
    raise ValueError(f"model {model.name!r} has no spatial feature map (no layer gives "
                     "(batch, height, width, channels)) to explain")


def _head(model: keras.Model) -> Any:
    """The layer giving ``model``'s output (the softmax dense layer of every arch)."""
    return model.outputs[0]._keras_history.operation


def _replay(model: keras.Model, path: Sequence[Any], stash: dict[str, Any]) -> keras.Model:
    """``model`` rebuilt on its own layers, giving ``[A, model's output]``, where ``A``
    is the output of ``path[-1]`` (inside the sub-models ``path[:-1]``); the input of
    ``model``'s head layer goes to ``stash["head_input"]``."""
    import keras

    head = _head(model)
    inner = _replay(path[0], path[1:], {}) if len(path) > 1 else None
    found: dict[str, Any] = {}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if layer is head:
            stash["head_input"] = args[0]
        if layer is path[0] and inner is not None:
            found["a"], out = inner(*args, **kwargs)
            return out
        out = layer(*args, **kwargs)
        if layer is path[0]:
            found["a"] = out
        return out

    if isinstance(model, keras.Sequential):  # a chain: call the layers one by one
        x = inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        for layer in model.layers:
            x = call(layer, x)
        outputs = x
    else:  # clone_model with the same layers replays the graph through ``call``
        clone = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                         call_function=call)
        inputs, outputs = clone.inputs, clone.outputs[0]
    return keras.Model(inputs, [found["a"], outputs])


@dataclass
class Parts:
    """What the heatmaps of one model need: ``sub`` maps pixels ``(B, S, S, 3)`` to ``[A
    (B, h, w, k), head input (B, d)]`` on the model's own layers; ``head`` is the softmax
    dense layer whose kernel and bias give the logits, or None when the model does not
    end in one (``sub``'s second output is then taken as the class scores)."""

    sub: keras.Model
    head: Any
    _compiled: Callable[[Any, Any], Any] | None = field(default=None, repr=False)

    def gradients(self, pixels: np.ndarray, classes: np.ndarray) -> tuple[Any, Any, Any]:
        """``(A, d score / dA, classes)`` of ``pixels`` for ``classes`` ``(N,)`` int32, a
        class below 0 meaning the predicted one. The first call runs eagerly, the later
        ones compiled: compiling costs more than one eager call (a gallery, a test),
        and saves most of each later one (a ConvNeXt's: 0.5 s instead of 4.7 s)."""
        import tensorflow as tf

        x, c = tf.constant(pixels), tf.constant(classes)
        if self._compiled is None:
            self._compiled = tf.function(self._run, reduce_retracing=True)
            return self._run(x, c)
        return self._compiled(x, c)

    def _run(self, x: Any, classes: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            a, h = self.sub(x, training=False)
            a = tf.cast(a, tf.float32)
            tape.watch(a)
            h = tf.cast(h, tf.float32)
            # The logit, not the probability: a softmax output of 1.0 has no gradient.
            scores = (tf.matmul(h, tf.cast(self.head.kernel, tf.float32))
                      + tf.cast(self.head.bias, tf.float32)) if self.head is not None else h
            chosen = tf.where(classes < 0, tf.argmax(scores, axis=1, output_type=tf.int32),
                              classes)
            # The images are independent (batch norm in inference mode): the gradient
            # of the sum is each image's own.
            total = tf.reduce_sum(tf.gather(scores, chosen, axis=1, batch_dims=1))
        return a, tape.gradient(total, a), chosen


def explainer(model: keras.Model) -> Parts:
    """The :class:`Parts` of ``model``, built once for many calls of :func:`heatmaps`."""
    import keras

    path = feature_path(model)
    stash: dict[str, Any] = {}
    replayed = _replay(model, path, stash)
    head = _head(model)
    softmax = (isinstance(head, keras.layers.Dense)
               and getattr(head.activation, "__name__", "") == "softmax")
    if softmax and "head_input" in stash:
        return Parts(keras.Model(replayed.inputs, [replayed.outputs[0], stash["head_input"]]),
                     head)
    return Parts(replayed, None)


# --- the heatmaps --------------------------------------------------------------------------


def class_maps(model: keras.Model, pixels: Any, classes: Sequence[int] | None = None,
               method: Method = METHOD, parts: Parts | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(maps (N, h, w) float32 >= 0 at the feature map's resolution, classes (N,))``.

    ``pixels`` is ``(N, S, S, 3)`` in 0..255 as the model is fed; ``classes[i]`` the
    class explained for image ``i`` (default: the predicted one); ``parts`` the result
    of :func:`explainer`, to build it once for many calls.
    """
    import tensorflow as tf

    if method not in METHODS:
        raise ValueError(f"unknown explain method {method!r}; choose one of {METHODS}")
    x = np.asarray(pixels, np.float32)
    wanted = np.full(len(x), -1, np.int32) if classes is None else np.asarray(classes, np.int32)
    a, grads, chosen = (parts or explainer(model)).gradients(x, wanted)
    if method == "gradcam":
        grads = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(grads * a, axis=-1))
    return maps.numpy().astype(np.float32), chosen.numpy()


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` float32 in [0, 1]: ``maps`` (N, h, w) resized bilinearly to ``size``
    (H, W) and divided by each map's maximum (an all-zero map stays zero)."""
    out = np.empty((len(maps), *size), np.float32)
    for i, m in enumerate(np.asarray(maps, np.float32)):
        big = np.asarray(Image.fromarray(m).resize((size[1], size[0]), Image.Resampling.BILINEAR))
        top = float(big.max())
        out[i] = np.clip(big / top, 0, 1) if top > 0 and np.isfinite(top) else 0
    return out


def heatmaps(model: keras.Model, pixels: Any, classes: Sequence[int] | None = None,
             method: Method = METHOD, parts: Parts | None = None,
             ) -> np.ndarray:
    """``(N, H, W)`` float32 in [0, 1]: where the evidence for ``classes`` (default the
    predicted ones) lies in each ``(H, W, 3)`` image of ``pixels`` (see
    :func:`class_maps` for the arguments)."""
    pixels = np.asarray(pixels, np.float32)
    maps, _ = class_maps(model, pixels, classes, method, parts)
    return upsample(maps, pixels.shape[1:3])


# --- drawing -------------------------------------------------------------------------------


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``image`` (H, W, 3) with ``heatmap`` (h, w) in [0, 1] drawn
    over it in matplotlib's ``jet`` colours (blue cold, red hot), resized to the image.

    The heatmap's opacity grows with its value (``alpha`` at the hottest), so the cold
    parts leave the photo visible.
    """
    from matplotlib import colormaps

    image = np.asarray(image, np.float32)
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != image.shape[:2]:
        heat = upsample(heat[None], image.shape[:2])[0]
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    weight = alpha * (0.35 + 0.65 * np.clip(heat, 0, 1))[..., None]
    return np.clip(image * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)


def side_by_side(image: np.ndarray, heatmap: np.ndarray, gap: int = 4) -> np.ndarray:
    """``(H, 2W + gap, 3)`` uint8: ``image`` (H, W, 3) and its :func:`overlay` with
    ``heatmap``, a white ``gap`` between them."""
    image = np.asarray(image, np.uint8)
    space = np.full((image.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([image, space, overlay(image, heatmap)], axis=1)
