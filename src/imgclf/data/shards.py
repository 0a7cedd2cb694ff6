"""The split stage's output format: TFRecord shards of ``tf.train.Example`` records.

Each record holds one image and its label, under the conventional feature names
(``FEATURES``). With ``split.encoding: source`` (the default) ``image/encoded`` is the
source file's own JPEG or PNG bytes with their metadata stripped, at the source's size,
or, for other files (other formats, or more than twice the image size a side), the
lossless PNG of the resized pixels; ``jpeg``, ``png`` and ``raw`` hold the resized
pixels encoded so. Every record is decoded with ``load_image``'s own code
(``imgclf.data.images.decode_image``: EXIF orientation, colour modes, 16-bit, alpha,
Pillow's resize), so the pixels training, evaluation and export see are exactly those
``predict`` and ``serve`` see for the same file. Any TensorFlow program reads the
records with ``tf.data.TFRecordDataset`` and ``tf.io.parse_single_example``
(docs/pipeline.md, "Prepared data"). ``meta.json`` beside the shards lists each
split's files, record counts, class names and the encoding. Shards close at
``split.shard_mb``, so a large dataset gets many files, which multi-worker training
divides among the workers.

TensorFlow is imported inside the functions that need it: ``read_meta`` is called
before a multi-worker strategy must be the first thing TensorFlow sets up.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.images import decode_image
from imgclf.errors import UserError

# /2: image/encoded may be the source's own bytes, at the source's size, with
# image/height and image/width as stored; /1 (the resized pixels only) reads the same.
FORMAT = "tfrecord-example/2"
READABLE_FORMATS = (FORMAT, "tfrecord-example/1")
SUFFIX = ".tfrecord"
# The features of each record (the names TensorFlow's own image datasets use).
ENCODED, IMAGE_FORMAT = "image/encoded", "image/format"
LABEL, LABEL_TEXT = "image/class/label", "image/class/text"
SHA256, FILENAME = "image/sha256", "image/filename"
HEIGHT, WIDTH, CHANNELS = "image/height", "image/width", "image/channels"
FEATURES = {ENCODED: "bytes: the source's own JPEG/PNG bytes, metadata stripped, or the "
                     "resized image encoded as image/format says; decode with "
                     "imgclf.data.images.decode_image(bytes, image_size)",
            IMAGE_FORMAT: "bytes: jpeg, png or raw (height*width*channels uint8, row-major RGB)",
            LABEL: "int64: index into class_names", LABEL_TEXT: "bytes: the class name",
            SHA256: "bytes: hex sha256 of the source file", FILENAME:
            "bytes: the source file's path under data/raw",
            HEIGHT: "int64: of image/encoded as stored (before EXIF orientation)",
            WIDTH: "int64: of image/encoded as stored", CHANNELS: "int64: 3 (decoded)"}
RECORD_FRAMING = 16  # TFRecord: uint64 length, uint32 crc of it, data, uint32 crc of data


@dataclass(frozen=True)
class ShardsMeta:
    """What ``meta.json`` holds: image size, class names, encoding and each split's files."""

    image_size: int
    class_names: list[str]
    encoding: str = "jpeg"  # source | jpeg | png | raw
    quality: int | None = 95  # JPEG quality; None for source, png and raw
    splits: dict[str, list[str]] = field(default_factory=dict)  # split -> shard file names
    counts: dict[str, int] = field(default_factory=dict)  # split -> number of records
    sizes: dict[str, int] = field(default_factory=dict)  # split -> bytes of its shard files
    # What the records hold, all splits: "source jpeg" / "source png" (a file's own bytes,
    # stripped), "png" / "jpeg" / "raw" (resized pixels) -> number of records.
    stored: dict[str, int] = field(default_factory=dict)

    def files(self, folder: str | os.PathLike[str], split: str) -> list[str]:
        """The paths of ``split``'s shard files in ``folder``, in the records' order."""
        return [str(Path(folder) / name) for name in self.splits.get(split, [])]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "encoding": self.encoding,
                           "quality": self.quality, "image_size": self.image_size,
                           "class_names": self.class_names, "splits": self.splits,
                           "counts": self.counts, "sizes": self.sizes,
                           "stored": self.stored, "features": FEATURES}, indent=2) + "\n"


def read_meta(folder: str | os.PathLike[str]) -> ShardsMeta:
    path = Path(folder) / "meta.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run the split stage first (dvc repro split)") from None
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON; rerun the split stage") from None
    if not isinstance(raw, dict) or raw.get("format") not in READABLE_FORMATS:
        raise UserError(f"{path}: not a {FORMAT} folder (an older format?); rerun the split "
                        "stage (dvc repro split)")
    return ShardsMeta(image_size=raw["image_size"], class_names=raw["class_names"],
                      encoding=raw["encoding"], quality=raw["quality"], splits=raw["splits"],
                      counts=raw["counts"], sizes=raw["sizes"], stored=raw.get("stored", {}))


def encode_example(label: int, class_name: str, encoded: bytes, image_format: str,
                   dims: tuple[int, int], sha256: str, filename: str) -> bytes:
    """One serialized ``tf.train.Example`` of an image ``encoded`` as ``image_format``
    (jpeg, png, raw), of ``dims`` (width, height) as stored."""
    import tensorflow as tf

    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    example = tf.train.Example(features=tf.train.Features(feature={
        ENCODED: _bytes(encoded), IMAGE_FORMAT: _bytes(image_format.encode()),
        LABEL: _int(label), LABEL_TEXT: _bytes(class_name.encode()),
        SHA256: _bytes(sha256.encode()), FILENAME: _bytes(filename.encode()),
        HEIGHT: _int(dims[1]), WIDTH: _int(dims[0]), CHANNELS: _int(3)}))
    # deterministic: the feature map in sorted key order, so same data -> same bytes.
    return example.SerializeToString(deterministic=True)


class ShardWriter:
    """Append records to ``<prefix>-00000.tfrecord``, ``-00001``, ... in ``folder``; a
    file is closed when the next record would take it past ``shard_bytes``."""

    def __init__(self, folder: Path, prefix: str, shard_bytes: int) -> None:
        self.folder, self.prefix, self.shard_bytes = folder, prefix, shard_bytes
        self.names: list[str] = []
        self.count = self.bytes = 0
        self._in_file = 0  # bytes in the open file
        self._file: Any = None

    def write(self, record: bytes) -> None:
        import tensorflow as tf

        size = len(record) + RECORD_FRAMING
        if self._file is not None and self._in_file + size > self.shard_bytes:
            self.close()
        if self._file is None:
            name = f"{self.prefix}-{len(self.names):05d}{SUFFIX}"
            self.names.append(name)
            self._file, self._in_file = tf.io.TFRecordWriter(str(self.folder / name)), 0
        self._file.write(record)
        self._in_file += size
        self.bytes += size
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def decode_encoded(encoded: bytes, encoding: str, size: int) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 pixels of one ``image/encoded`` value: raw pixels
    reshaped, anything else decoded with ``load_image``'s code (``decode_image``)."""
    if encoding == "raw":
        return np.frombuffer(encoded, np.uint8).reshape(size, size, 3)
    return decode_image(encoded, size)


def decode_pixels(encoded: Any, encoding: str, size: int) -> Any:
    """The ``(size, size, 3)`` uint8 tensor of one ``image/encoded`` value (a tf string).

    Raw pixels are reshaped in TensorFlow; the rest go to ``decode_image`` through
    ``tf.numpy_function`` (Python, in tf.data's parallel map: Pillow lets go of the GIL
    while it decodes and resizes). TensorFlow's own decoders would give other pixels:
    no EXIF orientation, other JPEG upsampling, no 16-bit scaling, no resize.
    """
    import tensorflow as tf

    if encoding == "raw":
        image = tf.reshape(tf.io.decode_raw(encoded, tf.uint8), (size, size, 3))
    else:
        image = tf.numpy_function(lambda data: decode_image(data, size), [encoded], tf.uint8,
                                  stateful=False)
    return tf.ensure_shape(image, (size, size, 3))


def parse_record(record: Any, meta: ShardsMeta) -> tuple[Any, Any]:
    """``(image (S, S, 3) uint8, label () int32)`` tensors of one serialized record."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(record, {
        ENCODED: tf.io.FixedLenFeature([], tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64)})
    image = decode_pixels(parsed[ENCODED], meta.encoding, meta.image_size)
    return image, tf.cast(parsed[LABEL], tf.int32)


def record_spans(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """``(offset, length)`` of each record's data in the TFRecord file ``path``, read from
    the length headers alone (seeking past the data)."""
    spans = []
    with open(path, "rb") as f:
        end, offset = os.fstat(f.fileno()).st_size, 0
        while offset < end:
            header = os.pread(f.fileno(), 8, offset)
            if len(header) < 8:
                raise UserError(f"{path}: truncated TFRecord file; rerun the split stage")
            (length,) = struct.unpack("<Q", header)
            spans.append((offset + 12, length))
            offset += RECORD_FRAMING + length
        if offset != end:
            raise UserError(f"{path}: truncated TFRecord file; rerun the split stage")
    return spans


class SplitImages:
    """``images[i]``: the ``(S, S, 3)`` uint8 image of record ``i`` of a split, across its
    shards, read and decoded on demand (as training decodes it); ``labels`` are the
    ``(N,)`` int32 labels.

    Records are found from the files' length headers and read with ``pread``: the
    gallery, the data report and the W&B table each look at a few images only.
    """

    def __init__(self, folder: str | os.PathLike[str], split: str) -> None:
        self._meta = read_meta(folder)
        self._spans = [(path, offset, length) for path in self._meta.files(folder, split)
                       for offset, length in record_spans(path)]

    def __len__(self) -> int:
        return len(self._spans)

    def _record(self, i: int) -> bytes:
        path, offset, length = self._spans[i]
        with open(path, "rb") as f:
            return os.pread(f.fileno(), length, offset)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} of {len(self)}")
        import tensorflow as tf

        example = tf.train.Example.FromString(self._record(i % len(self)))
        encoded = example.features.feature[ENCODED].bytes_list.value[0]
        return decode_encoded(encoded, self._meta.encoding, self._meta.image_size)

    @cached_property
    def labels(self) -> np.ndarray:  # read once, on first use
        import tensorflow as tf

        out = np.empty(len(self), np.int32)
        for i in range(len(self)):
            example = tf.train.Example.FromString(self._record(i))
            out[i] = example.features.feature[LABEL].int64_list.value[0]
        return out

    @cached_property
    def filenames(self) -> list[str]:  # read once, on first use
        """Each record's source file: its path under the raw folder (``image/filename``)."""
        import tensorflow as tf

        return [tf.train.Example.FromString(self._record(i)).features.feature[FILENAME]
                .bytes_list.value[0].decode() for i in range(len(self))]


def read_split(folder: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split decoded into memory: ``(images (N, S, S, 3) uint8, labels (N,) int32)``.

    For inspection and tests; stages use ``SplitImages`` (a few images) or
    ``imgclf.data.records`` (streaming) instead.
    """
    import tensorflow as tf

    meta = read_meta(folder)
    size, files = meta.image_size, meta.files(folder, split)
    if not files:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32)
    ds = tf.data.TFRecordDataset(files).map(lambda r: parse_record(r, meta))
    pairs = [(x.numpy(), y.numpy()) for x, y in ds]
    if not pairs:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32)
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs], np.int32)
