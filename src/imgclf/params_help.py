"""What every key of params.yaml means: the reference docs/params.md is made from.

No stage imports this module (tests/test_imports.py checks it), so editing a
description reruns nothing, while every stage depends on ``imgclf.params``, which
holds the defaults and the rules. ``make docs`` (scripts/params_doc.py) renders these
texts with the defaults into docs/params.md; tests/test_params_docs.py checks that every
field of the params, the layer types of ``model.layers`` included, has one and that
each names a key that exists.

Keys are dotted as in params.yaml; a section's key holds what the section is for; a
layer type of ``model.layers`` is ``model.layers.TYPE`` and its keys
``model.layers.TYPE.KEY``. Texts are Markdown, with links relative to docs/. Leave
measured figures out: they go stale; link [Performance](performance.md) instead.
"""

from __future__ import annotations

ACTIVATION = "`relu`, `gelu`, `swish`, `elu`, `tanh`, `sigmoid` or `linear`"

DESCRIPTIONS: dict[str, str] = {
    "data": "Where the images come from and their size; read by source, download and split.",
    "data.source": (
        "where the images come from: `kaggle:OWNER/NAME`, an `https://` or `file://` URL of a "
        "zip or tar archive, or a local folder with one sub-folder of images per class (see "
        "[Your own images](your-data.md#your-own-images))"
    ),
    "data.image_size": (
        "pixels a side the images are resized to (16 to 1024; at least 32 for `compact` and the "
        "backbones)"
    ),
    "split": "How split divides the images into train, val and test; read by split.",
    "split.train": (
        "fraction of each class in the train split; `train`, `val` and `test` must sum to 1 (a "
        "dataset that comes split keeps its own split, see [Datasets that come already "
        "split](your-data.md#datasets-that-come-already-split))"
    ),
    "split.val": (
        "fraction of each class in the val split (validated on every epoch); for a dataset that "
        "comes split without a val folder, the share of its train folder that becomes val"
    ),
    "split.test": "fraction of each class in the test split (what evaluate scores)",
    "split.seed": "seed of the split",
    "split.near_duplicates": (
        "how unlike two images' 16x16 grayscale thumbnails may be (1 - cosine of the normalised "
        "thumbnails, in [0, 1)) and still count as the same picture (re-encoded, resized, "
        "brightened, slightly cropped), kept in one split; `0` groups byte-identical files "
        "only. See [Duplicates](error-analysis.md#duplicates-and-what-split-sets-aside)"
    ),
    "split.cross_class_duplicates": (
        "the same picture in two classes: `keep` (each copy with its own label, all in one "
        "split, with a warning), `drop` (leave them all out) or `error` (stop, naming them)"
    ),
    "split.encoding": (
        "what the TFRecord shards hold of each image: `source` (the file's own JPEG or PNG "
        "bytes with their metadata stripped, where the file is at most twice "
        "`data.image_size` a side, else the lossless PNG of its resized pixels: training "
        "then sees exactly the pixels `predict` sees, through one lossy step at most), or "
        "the resized pixels as `jpeg` (lossy a second time, at `split.quality`), `png` "
        "(lossless) or `raw` (uint8 pixels, the largest). Every record is decoded as "
        "`load_image` decodes files. See "
        "[Prepared data](pipeline.md#prepared-data-tfrecord-shards) and, for the sizes "
        "measured, [Performance](performance.md)"
    ),
    "split.quality": (
        "JPEG quality of `split.encoding: jpeg`, 1..100 (ignored by source, png and raw); "
        "higher keeps more detail in more bytes (the sizes measured are in "
        "[Performance](performance.md))"
    ),
    "split.shard_mb": (
        "a shard file is closed once it holds this many MB; more files let multi-worker "
        "training shard by file"
    ),
    "audit": (
        "The data audit after split: likely label errors, outliers, near-duplicates and "
        "leaks, image-quality issues; read by audit. It changes no data: `overrides.yaml` "
        "does (see [Data audit](audit.md))"
    ),
    "audit.enabled": "`false`: the audit stage writes only a note saying it is off",
    "audit.folds": (
        "K of the K-fold logistic-regression heads trained on the embeddings; their "
        "out-of-fold probabilities feed cleanlab's `find_label_issues` (2 to 20)"
    ),
    "audit.duplicate_similarity": (
        "two images whose mirror-invariant embeddings have at least this cosine similarity "
        "(after centring) are near-duplicates; a pair across train, val and test is a leak"
    ),
    "audit.grid_images": "most thumbnails in each finding type's picture (1 to 200)",
    "audit.seed": "seed of the K-fold partition and of the projection's sample",
    "model": "The architecture; read by pretrained and train.",
    "model.arch": (
        "a pretrained backbone with a new head: `mobilenet_v2`, `mobilenet_v3_small`, "
        "`mobilenet_v3_large`, `efficientnetv2_b0`, `efficientnetv2_s`, `resnet50_v2`, "
        "`convnext_tiny` (see [Choosing a backbone](training.md#choosing-a-backbone)); "
        "`compact` (the from-scratch recipe: a small residual CNN with batch norm and global "
        "pooling; see [Training from scratch](training.md#training-from-scratch)), `small` (2 "
        "conv + 1 dense), `medium` (3 conv + 2 dense), `large` (4 conv + 2 dense), or `custom` "
        "(the layers of `model.layers`)"
    ),
    "model.dropout": (
        "dropout after each dense layer of `small`, `medium` and `large`, or before the head of "
        "`compact` and the backbones; in [0, 1)"
    ),
    "model.alpha": (
        "mobilenet_v2 width multiplier: `0.35` or `0.5` with pretrained weights; `0.75`, `1.0`, "
        "`1.3`, `1.4` from scratch (the other backbones have one width)"
    ),
    "model.pretrained": (
        "a backbone starts from pinned ImageNet weights (the pretrained stage), frozen while "
        "the head trains; `false` trains it from random weights"
    ),
    "model.layers": (
        "the layer list of `arch: custom`, e.g. `[{type: conv, filters: 32}, {type: "
        "max_pool}]`; empty for every other arch (the layer types are below; see [Your own "
        "architecture](#your-own-architecture-without-code))"
    ),
    # The layer types of model.layers, as model.layers.TYPE, and their keys.
    "model.layers.conv": "a 2-D convolution, `same` padding",
    "model.layers.conv.filters": "output channels",
    "model.layers.conv.kernel": "the side of the square kernel",
    "model.layers.conv.strides": "the step of the kernel; `2` halves the image",
    "model.layers.conv.activation": ACTIVATION,
    "model.layers.separable_conv": (
        "a depthwise separable 2-D convolution, `same` padding: fewer weights than `conv`"
    ),
    "model.layers.separable_conv.filters": "output channels",
    "model.layers.separable_conv.kernel": "the side of the square kernel",
    "model.layers.separable_conv.strides": "the step of the kernel; `2` halves the image",
    "model.layers.separable_conv.activation": ACTIVATION,
    "model.layers.max_pool": "max pooling over square windows",
    "model.layers.max_pool.size": "the side of the window, also its stride",
    "model.layers.avg_pool": "average pooling over square windows",
    "model.layers.avg_pool.size": "the side of the window, also its stride",
    "model.layers.global_avg_pool": "the mean of each channel over the image: one vector",
    "model.layers.flatten": (
        "the feature maps as one vector (added by itself before the first `dense` layer if "
        "missing)"
    ),
    "model.layers.batch_norm": "batch normalisation",
    "model.layers.dense": "a fully connected layer",
    "model.layers.dense.units": "its outputs",
    "model.layers.dense.activation": ACTIVATION,
    "model.layers.dropout": "dropout while training",
    "model.layers.dropout.rate": "the fraction of inputs dropped, in [0, 1)",
    "train": "How the model is trained; read by train.",
    "train.optimizer": "`adam`, `adamw`, `sgd` (with Nesterov momentum) or `rmsprop`",
    "train.learning_rate": "the learning rate (of the head, with a pretrained backbone)",
    "train.momentum": "momentum of `sgd` and `rmsprop`; in [0, 1)",
    "train.weight_decay": "weight decay of `adamw`",
    "train.loss": (
        "`sparse_categorical_crossentropy` or `categorical_crossentropy` (labels are one-hot "
        "encoded to match; needed by `train.label_smoothing` and `train.augment.mixup`)"
    ),
    "train.label_smoothing": (
        "label smoothing, in [0, 1); needs `loss: categorical_crossentropy`"
    ),
    "train.batch_size": (
        "images per training step; the global batch, split across all devices and workers (see "
        "[Training on several machines](training.md#training-on-several-machines))"
    ),
    "train.epochs": (
        "training epochs; with a pretrained backbone, the epochs of the new head alone (then "
        "`fine_tune.epochs`)"
    ),
    "train.early_stopping_patience": (
        "epochs without a better val loss before stopping (the best epoch is kept); `0` turns "
        "early stopping off"
    ),
    "train.seed": "seeds Python, NumPy and TensorFlow",
    "train.class_weight": (
        "`balanced` weighs each class's loss by `n / (classes × its train images)`, so a class "
        "with a tenth of the images counts as much in total (see [Uneven "
        "classes](your-data.md#uneven-classes)); `none`: all equal"
    ),
    "train.lr_schedule": "`constant`, or `cosine`: decay the rate to 0 over the epochs",
    "train.warmup_epochs": (
        "first raise the rate linearly from 0 over this many epochs, then the schedule (the "
        "first phase only); below `epochs`"
    ),
    "train.ema": (
        "keep an exponential moving average of the weights with this decay per batch (e.g. "
        "`0.99`; 0.9 to 1) and save it instead of the last weights (smoother, often better); "
        "`0` = off"
    ),
    "train.deterministic": (
        "TensorFlow op determinism: the same data, params and machine give identical weights "
        "and metrics (`dvc repro --force` twice); `false` trades that for speed"
    ),
    "train.mixed_precision": "float16 compute on a GPU; ignored on a CPU",
    "train.jit_compile": "XLA-compile the training step",
    "train.strategy": (
        "`auto` (one device, or all local GPUs mirrored), `mirrored` (TensorFlow's "
        "MirroredStrategy always) or `multi_worker` (several processes or machines, set up by "
        "`TF_CONFIG`; see [Training on several "
        "machines](training.md#training-on-several-machines)); `batch_size` is the global batch"
    ),
    "train.augment": "Random changes to the training images; read by train.",
    "train.augment.flip": (
        "random horizontal flips; with a pretrained backbone the features stage caches each "
        "train image and its mirror (the other augmentations make train run the whole model "
        "every epoch, see [the cached path](training.md#the-cached-path-train-at-the-speed-of-"
        "one-forward-pass))"
    ),
    "train.augment.rotation": "max random rotation, as a fraction of a full turn; in [0, 1)",
    "train.augment.zoom": "max random zoom in or out, as a fraction; in [0, 1)",
    "train.augment.contrast": "max random contrast change, as a fraction; in [0, 1)",
    "train.augment.crop": (
        "random resized crops: each training image becomes a random box of it covering at least "
        "this fraction of its area, resized back (e.g. `0.25`; 0.05 to 1); `0` = off"
    ),
    "train.augment.mixup": (
        "MixUp: blend each training image and its label with another's, by a weight from "
        "Beta(mixup, mixup) (e.g. `0.2`; at most 1); `0` = off. Needs `train.loss: "
        "categorical_crossentropy`"
    ),
    "train.fine_tune": (
        "A second phase for a pretrained backbone: unfreeze its top layers, lower the rate."
    ),
    "train.fine_tune.epochs": (
        "after the head, train the top of a pretrained backbone for this many epochs; `0` = "
        "train the new head only; ignored without a pretrained backbone"
    ),
    "train.fine_tune.learning_rate": "the learning rate of the fine-tuning phase",
    "train.fine_tune.layers": (
        "backbone layers unfrozen from the top (batch norm stays frozen); `0` = all. The "
        "features stage caches the activations below them (read by features and train)"
    ),
    "evaluate": (
        "How the model is scored; read by evaluate (and by predict and serve for tta)."
    ),
    "evaluate.batch_size": "images per model call when scoring",
    "evaluate.splits": (
        "the scored splits, of `train`, `val`, `test`; must include `test` (the plots are drawn "
        "for test)"
    ),
    "evaluate.tta": (
        "test-time augmentation: `flip` scores each image and its mirror image and averages the "
        "probabilities (twice the compute at evaluation; what it gains is measured in "
        "[Performance](performance.md)); `none` scores the image alone. `imgclf predict` and "
        "`imgclf serve` use the same setting"
    ),
    "export": (
        "The export stage: which formats to write from the trained model, and their bounds. A "
        "format that misses a bound fails the stage, saying by how much, unless the miss is soft "
        "(see "
        "[Export](export.md))."
    ),
    "export.formats": (
        "the formats the export stage writes, of `savedmodel`, `tflite_float16`, `tflite_int8`, "
        "`onnx` (see [Export](export.md))"
    ),
    "export.int8_samples": (
        "training images (never val or test) that calibrate the int8 model"
    ),
    "export.batch_size": (
        "images per call when the export stage scores the test split (its throughput figure)"
    ),
    "export.latency_runs": "single-image calls timed per format (median and p95 latency)",
    "export.min_agreement": (
        "SavedModel, ONNX and float16 must pick the Keras model's top class on at least this "
        "fraction of the test images"
    ),
    "export.int8_max_accuracy_drop": (
        "int8 may lose at most this much test accuracy against the Keras model (a fraction: "
        "0.01 = 1 point)"
    ),
    "export.int8_max_size_ratio": (
        "int8's file size may be at most this fraction of the `.keras` file's"
    ),
    "export.strict": (
        "`false`: a soft miss (a format that disagrees with Keras only on images Keras itself "
        "is unsure of: wobble at the decision boundary) is warned on and written to "
        "`metrics/export.json`, and the stage goes on; `true`: it fails the stage like any "
        "other miss (see [Export](export.md))"
    ),
    "ood": (
        "Unknown inputs: the out-of-distribution score every model computes beside its "
        "probabilities, and the threshold above which an image is *none of the classes* (see "
        "[Unknown inputs](ood.md))."
    ),
    "ood.method": (
        "the score the model computes in-graph: `energy` (-logsumexp of the logits), `msp` "
        "(1 - the largest softmax probability) or `mahalanobis` (the distance of the "
        "penultimate features to their predicted class's mean, one shared covariance); "
        "`energy` was chosen by measurement, see [Unknown inputs](ood.md) (read by train)"
    ),
    "ood.keep_rate": (
        "the share of in-distribution images the threshold keeps: it is fitted on the val split "
        "so that this share scores below it, by train for `.keras` and by export for each "
        "format"
    ),
    "ood.threshold": (
        "`null`: each model file's own fitted threshold; a number overrides it in evaluate, "
        "`imgclf predict` and `imgclf serve` (their `--unknown-threshold` overrides this)"
    ),
    "ood.loco_classes": (
        "the ood stage's leave-one-class-out runs: at most this many classes left out in turn "
        "(sampled with `ood.seed` when there are more)"
    ),
    "ood.generated": (
        "generated out-of-domain images per kind (noise, flat colours, text, heavy crops) "
        "scored by the ood and export stages"
    ),
    "ood.seed": "the seed of the generated images and of the classes sampled for leave-one-out",
    "wandb": (
        "Weights & Biases tracking of train and evaluate; it never changes an output. No stage "
        "lists these keys in dvc.yaml, so changing them reruns nothing. The API key is not a "
        "param: it comes from ``WANDB_API_KEY`` in the environment or in ``.env`` (see [Weights "
        "& Biases](tracking.md)); without one, runs are kept offline."
    ),
    "wandb.enabled": (
        "track train and evaluate; `false` = no W&B at all (as does the environment's "
        "`WANDB_MODE=disabled`)"
    ),
    "wandb.project": "the W&B project the runs go to",
    "wandb.entity": (
        "W&B user or team; `\"\"` = the API key's default user or team (or `$WANDB_ENTITY`)"
    ),
    "wandb.group": (
        "W&B group of the runs; `\"\"` = the DVC experiment's name, else the git revision, else "
        "`local`. `make compare` sets one group per sweep"
    ),
    "wandb.log_model": "upload `models/model.keras` as a `model` artifact",
    "wandb.log_manifest": "upload `data/prepared/manifest.csv` as a `dataset` artifact",
    "wandb.misclassified": (
        "most rows of the W&B table of misclassified test images; `0` = no table"
    ),
}
