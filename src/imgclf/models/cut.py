"""Where a pretrained backbone model splits into its frozen bottom and its trained top.

Fine-tuning trains the top ``train.fine_tune.layers`` layers of the backbone; below them
the backbone is a fixed function (frozen weights, batch norm in inference mode). The
cut goes where the unfrozen layers start, moved down to the nearest boundary that one
tensor alone crosses: inside a residual block two tensors are live (the block's input
and its branch), and a cache of one activation could not feed the layers above. The
frozen layers between the cut and the unfrozen ones run in train, as part of the top.

The sub-models made here share their layers (and so their weights) with the whole
model: training the top trains the whole model's layers, which train then saves.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from imgclf.models.architectures import BACKBONE


def _producers(base: keras.Model) -> list[set[int]]:
    """For each layer of ``base`` (in order), the indices of the layers it reads."""
    index = {id(layer): i for i, layer in enumerate(base.layers)}
    found: list[set[int]] = []
    for layer in base.layers:
        found.append({index[id(t._keras_history.operation)]
                      for node in layer._inbound_nodes for t in node.input_tensors
                      if id(t._keras_history.operation) in index})
    return found


def cut_index(base: keras.Model, n_layers: int) -> int:
    """The index of the first layer above the cut for ``n_layers`` unfrozen layers.

    ``base.layers[:k]`` lie below, ``base.layers[k:]`` above; the cut starts at
    ``len - n_layers`` and moves down until a single layer's output (the one of layer
    ``k - 1``) is all that the layers above read from below. ``n_layers`` must be at
    least 1 and less than the layer count (0, all layers, leaves nothing to cache).
    """
    layers = base.layers
    if not 0 < n_layers < len(layers):
        raise ValueError(f"no cut for {n_layers} of {len(layers)} layers")
    producers = _producers(base)
    k = len(layers) - n_layers
    while k > 1:
        crossing = {j for i in range(k, len(layers)) for j in producers[i] if j < k}
        if crossing == {k - 1}:
            return k
        k -= 1
    raise ValueError("the backbone has no single-tensor boundary below the unfrozen layers")


@dataclass(frozen=True)
class Parts:
    """The sub-models of one backbone classifier, sharing its layers.

    ``bottom``: pixels (B, S, S, 3) in 0..255 -> [activations at the cut (B, h, w, c),
    pooled backbone output (B, d)], the backbone's preprocessing included, augmentation
    excluded. ``head``: pooled (B, d) -> probabilities (B, C) (dropout, dense).
    ``top``: activations at the cut -> probabilities (the layers above the cut, pooling,
    dropout, dense). ``cut``: the name of the layer whose output is cached.
    """

    bottom: keras.Model
    head: keras.Model
    top: keras.Model
    cut: str


def split_model(model: keras.Model, n_layers: int) -> Parts:
    """The parts of ``model`` (build_model's, for a backbone arch) for ``n_layers``."""
    base = model.get_layer(BACKBONE)
    where = model.layers.index(base)
    k = cut_index(base, n_layers)
    cut = base.layers[k - 1]
    # Before the backbone: augmentation (identity in inference, left out) and the
    # backbone's pixel scaling (kept: the bottom must see what the backbone sees).
    pixels = keras.Input(model.input.shape[1:], name="pixels")
    x = pixels
    for layer in model.layers[1:where]:
        if isinstance(layer, keras.layers.Rescaling):
            x = layer(x)
    inner = keras.Model(base.input, [cut.output, base.output], name="frozen")
    bottom = keras.Model(pixels, inner(x, training=False), name="bottom")

    pooled = keras.Input(base.output.shape[1:], name="pooled")
    head = keras.Model(pooled, _after(model, where, pooled), name="head")
    activations = keras.Input(cut.output.shape[1:], name="activations")
    above = keras.Model(cut.output, base.output, name="above_cut")
    # training=False as in the whole model: batch norm stays in inference mode.
    top = keras.Model(activations, _after(model, where, above(activations, training=False)),
                      name="top")
    return Parts(bottom, head, top, cut.name)


def _after(model: keras.Model, where: int, x: keras.KerasTensor) -> keras.KerasTensor:
    """``x`` through the layers of ``model`` after its backbone (dropout, the head)."""
    for layer in model.layers[where + 1:]:
        x = layer(x)
    return x
