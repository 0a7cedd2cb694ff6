"""The pixels training sees are the pixels predict sees (issue 23 §4).

A split of awkward files (EXIF-rotated, XMP-rotated, CMYK, grayscale, palette with
transparency, 16-bit, RGBA, large, tiny, progressive, WebP) is read back with
``make_dataset`` (the reader of features, train, evaluate) and ``SplitImages`` (the
gallery, export's representative set) and compared with ``load_image`` pixel for pixel;
and the metadata the sources carry (GPS, camera, XMP, comments, trailers) is looked for
in the shard bytes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import imgclf.data.split as split_stage
from imgclf.data.decoding import KEEP_MAX_SCALE
from imgclf.data.images import decode_image, load_image
from imgclf.data.records import make_dataset
from imgclf.data.shards import SplitImages, read_meta
from imgclf.data.stratify import SPLITS
from imgclf.data.stripping import strip_jpeg, strip_png
from imgclf.params import DataParams, SplitParams

SIZE = 32
# Strings the sources carry in their metadata; none may reach the shards.
SECRETS = (b"IMGCLF-GPS-DATUM", b"IMGCLF-MAKE", b"IMGCLF-XMP", b"IMGCLF-COMMENT",
           b"IMGCLF-TRAILER", b"IMGCLF-PNG-TEXT")
XMP_ROTATED = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
               b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="8" '
               b'tiff:Make="IMGCLF-XMP"/></rdf:RDF></x:xmpmeta>')


def smooth(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A smooth random picture (noise would make JPEG comparisons meaningless)."""
    a = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(a).resize(size, Image.Resampling.BICUBIC).convert(mode)


def private_exif(orientation: int) -> Image.Exif:
    """EXIF with an orientation, a camera maker and a GPS position."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "IMGCLF-MAKE"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (51.0, 30.0, 12.5)
    gps[18] = "IMGCLF-GPS-DATUM"
    return exif


def jpeg(im: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **options)
    return buf.getvalue()


def png(im: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **options)
    return buf.getvalue()


def awkward_files(seed: int) -> dict[str, bytes]:
    """File name -> bytes: one of each kind that load_image treats specially."""
    palette = smooth(seed + 5, (30, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    sixteen = Image.fromarray((np.random.default_rng(seed).random((36, 28)) * 60000)
                              .astype(np.uint16))
    with_text = smooth(seed + 9, (24, 24), "RGBA")
    info = PngInfo()
    info.add_text("Comment", "IMGCLF-PNG-TEXT")
    return {
        "rotated.jpg": jpeg(smooth(seed, (48, 24)), exif=private_exif(6).tobytes(),
                            comment=b"IMGCLF-COMMENT") + b"IMGCLF-TRAILER",
        "xmp_rotated.jpg": jpeg(smooth(seed + 1, (40, 20)), xmp=XMP_ROTATED),
        "cmyk.jpg": jpeg(smooth(seed + 2, (40, 40), "CMYK")),
        "gray.jpg": jpeg(smooth(seed + 3, (20, 30), "L")),
        "gray.png": png(smooth(seed + 4, (30, 20), "L")),
        "palette_transparent.png": png(palette, transparency=3),
        "sixteen_bit.png": png(sixteen),
        "rgba_rotated.png": png(with_text, exif=private_exif(3).tobytes(), pnginfo=info),
        "large.jpg": jpeg(smooth(seed + 6, (KEEP_MAX_SCALE * SIZE + 90, 100))),
        "resized_kept.jpg": jpeg(smooth(seed + 7, (KEEP_MAX_SCALE * SIZE, 50))),
        "tiny.jpg": jpeg(smooth(seed + 8, (5, 7))),
        "progressive.jpg": jpeg(smooth(seed + 10, (44, 36)), progressive=True,
                                exif=private_exif(5).tobytes()),
        "lossless.webp": _webp(smooth(seed + 11, (30, 30))),
    }


def _webp(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "WEBP", lossless=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(raw, prepared)``: two classes of the awkward files, split at SIZE px."""
    root = tmp_path_factory.mktemp("awkward")
    for c, name in enumerate(("one", "two")):
        (root / "raw" / name).mkdir(parents=True)
        for file, data in awkward_files(100 * c).items():
            (root / "raw" / name / file).write_bytes(data)
    split_stage.run(DataParams(image_size=SIZE), SplitParams(seed=1), root / "raw",
                    root / "prepared")
    return root / "raw", root / "prepared"


def test_training_reads_exactly_load_images_pixels(awkward: tuple[Path, Path]) -> None:
    """make_dataset (features, train, evaluate) and SplitImages (gallery, export) give,
    record by record, what load_image gives for the file."""
    raw, prepared = awkward
    meta = read_meta(prepared)
    with open(prepared / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 26 and meta.encoding == "source"
    for split in SPLITS:
        paths = [r["path"] for r in rows if r["split"] == split]
        if not paths:
            continue
        got = np.concatenate([x.numpy() for x, _ in make_dataset(prepared, meta, split, 5)])
        images = SplitImages(prepared, split)
        for i, path in enumerate(paths):
            expected = load_image(raw / path, SIZE)
            np.testing.assert_array_equal(got[i], expected.astype(np.float32), err_msg=path)
            np.testing.assert_array_equal(images[i], expected, err_msg=path)
    # The large file and the WebP are stored as PNG pixels; all the others as themselves.
    assert meta.stored == {"png": 4, "source jpeg": 14, "source png": 8}


def test_no_metadata_reaches_the_shards(awkward: tuple[Path, Path]) -> None:
    raw, prepared = awkward
    sources = b"".join(p.read_bytes() for p in raw.rglob("*.*"))
    shards = b"".join(p.read_bytes() for p in prepared.glob("*.tfrecord"))
    for secret in SECRETS:
        assert secret in sources, secret  # the test files do carry them ...
        assert secret not in shards, secret  # ... the shards do not
    assert b"http://ns.adobe.com/xap/1.0/" not in shards  # no XMP block at all


def test_stripping_copies_the_compressed_data_byte_for_byte() -> None:
    """No re-encoding: the JPEG's scans and the PNG's IDAT chunks are the source's."""
    source = awkward_files(7)["rotated.jpg"]
    stripped = strip_jpeg(source, orientation=6)
    assert stripped is not None and len(stripped) < len(source)
    scans = source[source.index(b"\xff\xda"):source.rindex(b"\xff\xd9") + 2]
    assert stripped.endswith(scans)
    np.testing.assert_array_equal(decode_image(stripped, SIZE), decode_image(source, SIZE))
    with Image.open(io.BytesIO(stripped)) as im:
        assert dict(im.getexif()) == {0x0112: 6}  # the orientation alone
    assert strip_jpeg(source, orientation=1)[2:4] != b"\xff\xe1"  # no EXIF when upright

    source = awkward_files(7)["rgba_rotated.png"]
    stripped = strip_png(source, orientation=3)
    assert stripped is not None
    idat = source[source.index(b"IDAT") - 4:source.index(b"IEND") - 4]
    assert idat in stripped and b"tEXt" not in stripped
    np.testing.assert_array_equal(decode_image(stripped, SIZE), decode_image(source, SIZE))


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0\x00",
                                  b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_stripping_refuses_what_it_cannot_parse(data: bytes) -> None:
    """None sends the split to its fallback: the pixels, as PNG."""
    assert strip_jpeg(data) is None and strip_png(data) is None
    assert strip_jpeg(awkward_files(1)["tiny.jpg"][:-30]) is None  # no end of image
