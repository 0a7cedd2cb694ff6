"""Tests of the split stage end to end (imgclf.data.split.run) on generated raw folders."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgclf.data.split as split_stage
from imgclf.data.decoding import encode_pixels
from imgclf.data.images import load_image
from imgclf.data.shards import ShardsMeta, decode_encoded, read_meta, read_split
from imgclf.data.stratify import SPLITS, target_counts
from imgclf.errors import UserError
from imgclf.params import DataParams, SplitParams

SIZE = 16
DATA = DataParams(image_size=SIZE)
SPLIT = SplitParams(train=0.7, val=0.15, test=0.15, seed=3)
CLASSES = ("cat", "dog", "fox")


def noise_png(seed: int, size: int = 20) -> bytes:
    """A random-noise PNG: distinct seeds give images far apart in dHash."""
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def smooth_image(seed: int) -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(a).resize((64, 64), Image.Resampling.BICUBIC)


def make_classes(raw: Path, per_class: dict[str, int], seed: int = 0) -> dict[str, list[str]]:
    """Write distinct noise images; return class -> relative paths."""
    out: dict[str, list[str]] = {}
    for c, (name, n) in enumerate(per_class.items()):
        folder = raw / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"{name}_{i:02d}.png").write_bytes(noise_png(seed * 10_000 + c * 1000 + i))
        out[name] = [f"{name}/{name}_{i:02d}.png" for i in range(n)]
    return out


def read_manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def expected_pixels(path: Path, meta: ShardsMeta) -> np.ndarray:
    """What a record of the file at ``path`` decodes to: ``load_image``'s pixels, but for
    ``split.encoding: jpeg``, which re-encodes them (a second lossy step)."""
    pixels = load_image(path, meta.image_size)
    if meta.encoding != "jpeg":
        return pixels
    return decode_encoded(encode_pixels(pixels, "jpeg", meta.quality or 0), "jpeg",
                          meta.image_size)


def check_shards_match_files(raw: Path, out: Path) -> None:
    """Every split's records are, in manifest order, the decoded files with their labels
    (exactly load_image's pixels, but for split.encoding jpeg)."""
    meta = read_meta(out)
    rows = read_manifest(out)
    for name in SPLITS:
        split_rows = [r for r in rows if r["split"] == name]
        pixels, labels = read_split(out, name)
        assert len(pixels) == len(split_rows) == meta.counts[name]
        for r, p, label in zip(split_rows, pixels, labels, strict=True):
            assert meta.class_names[label] == r["label"]
            assert np.array_equal(p, expected_pixels(raw / r["path"], meta)), r["path"]


@pytest.fixture
def messy_raw(tmp_path: Path) -> Path:
    """Three classes of distinct images plus every kind of file the stage must handle."""
    raw = tmp_path / "raw"
    make_classes(raw, {"cat": 10, "dog": 9, "fox": 11})
    # A byte-identical copy in the same class.
    (raw / "cat" / "copy_of_00.png").write_bytes((raw / "cat" / "cat_00.png").read_bytes())
    # A re-encoded (near-duplicate) pair in the same class.
    im = smooth_image(5)
    im.save(raw / "dog" / "photo.png")
    im.save(raw / "dog" / "photo_small.jpg", quality=70)
    # The same image filed under two classes.
    shared = noise_png(999)
    (raw / "cat" / "shared.png").write_bytes(shared)
    (raw / "fox" / "shared.png").write_bytes(shared)
    # Unusable files.
    (raw / "cat" / "empty.jpg").write_bytes(b"")
    (raw / "dog" / "page.jpg").write_text("<html><body>Not found</body></html>")
    (raw / "fox" / ".hidden.png").write_bytes(noise_png(1234))
    (raw / "README.txt").write_text("not in a class")
    (raw / "empty_class").mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(noise_png(4321))
    (raw / "fox" / "link.png").symlink_to(outside)
    return raw


@pytest.fixture
def messy_out(messy_raw: Path, tmp_path: Path) -> Path:
    out = tmp_path / "prepared"
    split_stage.run(DATA, SPLIT, messy_raw, out)
    return out


def test_meta_names_the_classes_with_images(messy_out: Path) -> None:
    meta = read_meta(messy_out)
    assert meta.class_names == ["cat", "dog", "fox"]
    assert meta.image_size == SIZE
    meta_json = json.loads((messy_out / "meta.json").read_text(encoding="utf-8"))
    assert "empty_class" not in meta_json["class_names"]


def test_manifest_rows(messy_raw: Path, messy_out: Path) -> None:
    rows = read_manifest(messy_out)
    assert list(rows[0]) == ["path", "label", "split", "sha256"]
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths))
    expected = {f"cat/cat_{i:02d}.png" for i in range(10)} | {"cat/copy_of_00.png"}
    expected |= {f"dog/dog_{i:02d}.png" for i in range(9)} | {"dog/photo.png",
                                                               "dog/photo_small.jpg"}
    expected |= {f"fox/fox_{i:02d}.png" for i in range(11)}
    expected |= {"cat/shared.png", "fox/shared.png"}  # kept: cross_class_duplicates keep
    assert set(paths) == expected
    for r in rows:
        assert r["label"] == r["path"].split("/")[0]
        assert r["split"] in SPLITS
        assert r["sha256"] == hashlib.sha256((messy_raw / r["path"]).read_bytes()).hexdigest()


def test_counts_per_class_and_split(messy_out: Path) -> None:
    rows = read_manifest(messy_out)
    meta = read_meta(messy_out)
    per = Counter((r["label"], r["split"]) for r in rows)
    assert meta.counts == {s: sum(per[(c, s)] for c in CLASSES) for s in SPLITS}
    sizes = {"cat": 12, "dog": 11, "fox": 12}
    for c, n in sizes.items():
        targets = target_counts(n, (SPLIT.train, SPLIT.val, SPLIT.test))
        for s, target in zip(SPLITS, targets, strict=True):
            assert per[(c, s)] >= 1
            assert abs(per[(c, s)] - target) <= 2, (c, s)  # groups here hold at most 2
    report = read_report(messy_out)
    assert report["images"] == len(rows) == 35
    assert report["counts"] == {s: {c: per[(c, s)] for c in CLASSES} for s in SPLITS}


def test_duplicates_land_in_the_same_split(messy_out: Path) -> None:
    split_of = {r["path"]: r["split"] for r in read_manifest(messy_out)}
    assert split_of["cat/copy_of_00.png"] == split_of["cat/cat_00.png"]
    assert split_of["dog/photo.png"] == split_of["dog/photo_small.jpg"]
    # The same picture in two classes: kept in both, with their own labels, in one split.
    assert split_of["cat/shared.png"] == split_of["fox/shared.png"]


def test_report_duplicate_groups(messy_out: Path) -> None:
    groups = sorted(sorted(g) for g in read_report(messy_out)["duplicate_groups"])
    assert ["cat/cat_00.png", "cat/copy_of_00.png"] in groups
    assert ["dog/photo.png", "dog/photo_small.jpg"] in groups
    assert ["cat/shared.png", "fox/shared.png"] in groups
    assert len(groups) == 3


def test_report_skipped_reasons(messy_out: Path) -> None:
    report = read_report(messy_out)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert reasons["cat/empty.jpg"] == "empty file"
    assert reasons["dog/page.jpg"].startswith("not an image")
    assert reasons["fox/.hidden.png"] == "hidden"
    assert reasons["README.txt"] == "not inside a class folder"
    assert reasons["empty_class"] == "empty class folder"
    assert reasons["fox/link.png"] == "link to outside the dataset"
    assert len(reasons) == len(report["skipped"]) == 6
    assert sum(report["skipped_by_reason"].values()) == 6
    assert report["cross_class_groups"] == [["cat/shared.png", "fox/shared.png"]]
    assert report["settings"] == {"near_duplicates": SPLIT.near_duplicates,
                                  "cross_class_duplicates": "keep"}


def test_cross_class_duplicates_drop(messy_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT.model_copy(update={"cross_class_duplicates": "drop"}),
                    messy_raw, out)
    report = read_report(out)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert reasons["cat/shared.png"] == "the same image is in another class"
    assert reasons["fox/shared.png"] == "the same image is in another class"
    assert report["skipped_by_reason"]["the same image is in another class"] == 2
    assert not {"cat/shared.png", "fox/shared.png"} & {r["path"] for r in read_manifest(out)}
    check_shards_match_files(messy_raw, out)


def test_cross_class_duplicates_error_names_the_files(messy_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        split_stage.run(DATA, SPLIT.model_copy(update={"cross_class_duplicates": "error"}),
                        messy_raw, tmp_path / "out")
    message = str(info.value)
    assert "cat/shared.png" in message and "fox/shared.png" in message
    assert "split.cross_class_duplicates" in message
    assert not (tmp_path / "out").exists()


def test_shards_hold_the_decoded_files(messy_raw: Path, messy_out: Path) -> None:
    check_shards_match_files(messy_raw, messy_out)


def test_output_folder_holds_only_the_outputs(messy_out: Path) -> None:
    names = {p.name for p in messy_out.iterdir()}
    assert {"meta.json", "manifest.csv", "report.json"} <= names
    assert names - {"meta.json", "manifest.csv", "report.json"} == {
        n for names_ in read_meta(messy_out).splits.values() for n in names_}
    assert not [p for p in messy_out.parent.iterdir() if p.name.startswith(".prepared")]


def test_rerun_with_the_same_seed_is_byte_identical(messy_raw: Path, messy_out: Path,
                                                    tmp_path: Path) -> None:
    again = tmp_path / "again"
    split_stage.run(DATA, SPLIT, messy_raw, again)
    assert tree(again) == tree(messy_out)
    # Rerunning into the same folder replaces it with the same content.
    before = tree(messy_out)
    split_stage.run(DATA, SPLIT, messy_raw, messy_out)
    assert tree(messy_out) == before


def test_another_seed_gives_another_split(messy_raw: Path, messy_out: Path,
                                          tmp_path: Path) -> None:
    other = tmp_path / "other"
    split_stage.run(DATA, SplitParams(seed=SPLIT.seed + 1), messy_raw, other)
    first = {r["path"]: r["split"] for r in read_manifest(messy_out)}
    second = {r["path"]: r["split"] for r in read_manifest(other)}
    assert first.keys() == second.keys()
    assert first != second


def test_one_usable_class_is_an_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"cat": 5})
    (raw / "dog").mkdir()
    (raw / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (raw / "empty").mkdir()
    with pytest.raises(UserError) as info:
        split_stage.run(DATA, SPLIT, raw, tmp_path / "out")
    message = str(info.value)
    assert "cat" in message
    assert "2" in message
    assert not (tmp_path / "out").exists()


def test_no_class_folders_is_an_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "loose.png").write_bytes(noise_png(1))
    with pytest.raises(UserError):
        split_stage.run(DATA, SPLIT, raw, tmp_path / "out")


def test_missing_raw_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="download"):
        split_stage.run(DATA, SPLIT, tmp_path / "nope", tmp_path / "out")


def test_too_small_class_names_it(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"cat": 6, "mouse": 2, "dog": 6})
    with pytest.raises(UserError, match="'mouse'"):
        split_stage.run(DATA, SPLIT, raw, tmp_path / "out")


def test_failing_run_leaves_the_previous_output_untouched(messy_out: Path,
                                                           tmp_path: Path) -> None:
    before = tree(messy_out)
    bad = tmp_path / "bad_raw"
    make_classes(bad, {"only": 6}, seed=7)
    with pytest.raises(UserError):
        split_stage.run(DATA, SPLIT, bad, messy_out)
    assert tree(messy_out) == before
    leftovers = [p.name for p in messy_out.parent.iterdir() if p.name.startswith(".prepared")]
    assert leftovers == []


def test_class_with_only_conflicting_images_is_dropped(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 5, "b": 5})
    (raw / "c").mkdir()
    for i in range(3):  # every image of c is also in a
        data = noise_png(5000 + i)
        (raw / "a" / f"dup{i}.png").write_bytes(data)
        (raw / "c" / f"dup{i}.png").write_bytes(data)
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT.model_copy(update={"cross_class_duplicates": "drop"}), raw, out)
    meta = read_meta(out)
    assert meta.class_names == ["a", "b"]
    rows = read_manifest(out)
    assert {r["label"] for r in rows} == {"a", "b"}
    assert len(rows) == 10
    reasons = {s["path"]: s["reason"] for s in read_report(out)["skipped"]}
    assert reasons["c"] == "class folder has no usable image"
    # Labels are renumbered after the dropped class: shards still match the manifest.
    check_shards_match_files(raw, out)


def test_link_inside_the_dataset_is_followed(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 4, "b": 4})
    (raw / "b" / "alias.png").symlink_to(raw / "b" / "b_00.png")
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, raw, out)
    split_of = {r["path"]: r["split"] for r in read_manifest(out)}
    assert split_of["b/alias.png"] == split_of["b/b_00.png"]


def test_nested_folders_belong_to_their_class(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 4, "b": 4})
    (raw / "a" / "sub").mkdir()
    (raw / "a" / "sub" / "deep.png").write_bytes(noise_png(777))
    (raw / "a" / ".git").mkdir()
    (raw / "a" / ".git" / "x.png").write_bytes(noise_png(778))
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, raw, out)
    labels = {r["path"]: r["label"] for r in read_manifest(out)}
    assert labels["a/sub/deep.png"] == "a"
    assert "a/.git/x.png" not in labels
    assert read_meta(out).class_names == ["a", "b"]


def test_parallel_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At PARALLEL_MIN_FILES files or more the stage decodes in worker processes."""
    raw = tmp_path / "raw"
    per_class = {"a": 24, "b": 24, "c": 22}
    make_classes(raw, per_class, seed=3)
    (raw / "c" / "broken.jpg").write_bytes(b"garbage")
    n_files = sum(per_class.values()) + 1
    assert n_files >= split_stage.PARALLEL_MIN_FILES
    out = tmp_path / "parallel"
    split_stage.run(DATA, SPLIT, raw, out)

    rows = read_manifest(out)
    assert len(rows) == 70
    assert Counter(r["label"] for r in rows) == per_class
    assert sum(read_meta(out).counts.values()) == 70
    reasons = {s["path"]: s["reason"] for s in read_report(out)["skipped"]}
    assert reasons["c/broken.jpg"].startswith("not an image")
    check_shards_match_files(raw, out)

    # The same result as decoding in this process.
    monkeypatch.setattr(split_stage, "PARALLEL_MIN_FILES", 10**9)
    serial = tmp_path / "serial"
    split_stage.run(DATA, SPLIT, raw, serial)
    assert tree(serial) == tree(out)


def test_class_folder_linking_outside_the_dataset_is_skipped(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 4, "b": 4})
    elsewhere = tmp_path / "elsewhere"
    make_classes(elsewhere, {"c": 4}, seed=9)
    (raw / "c").symlink_to(elsewhere / "c", target_is_directory=True)
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, raw, out)
    assert read_meta(out).class_names == ["a", "b"]
    assert all(not r["path"].startswith("c/") for r in read_manifest(out))
    reasons = {s["path"]: s["reason"] for s in read_report(out)["skipped"]}
    assert reasons["c"] == "link to outside the dataset"


def test_parallel_path_without_sched_getaffinity(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS and Windows have no os.sched_getaffinity; the stage must still run."""
    monkeypatch.delattr(split_stage.os, "sched_getaffinity", raising=False)
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 33, "b": 33}, seed=4)
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, raw, out)
    assert len(read_manifest(out)) == 66


# --- the catalogue of unusual inputs ----------------------------------------------------------


def noise_image(seed: int, size: tuple[int, int] = (24, 24), mode: str = "RGB") -> Image.Image:
    """Random pixels in ``mode``: every seed gives a picture far from the others in dHash."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    a = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if mode == "RGBA":
        a[..., 3] = rng.integers(128, 256, (height, width), dtype=np.uint8)  # partly see-through
    return Image.fromarray(a[..., 0] if channels == 1 else a, mode)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def save(raw: Path, name: str, im: Image.Image, fmt: str, **kwargs: object) -> None:
    path = raw / name
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kwargs)


# Usable files with unusual formats, modes, shapes and names: name -> original (w, h).
USABLE = {
    "cat/UPPER.JPG": (24, 24), "cat/Shout.PNG": (24, 24), "cat/photo.JPEG": (24, 24),
    "cat/gray.png": (24, 24), "cat/cmyk.jpg": (24, 24), "cat/alpha.png": (24, 24),
    "cat/palette.png": (24, 24),
    "snow leopard/sixteen bit.png": (24, 24), "snow leopard/bitmap.bmp": (24, 24),
    "snow leopard/web.webp": (24, 24), "snow leopard/anim.gif": (24, 24),
    "snow leopard/jpeg really.png": (24, 24), "snow leopard/rotated.jpg": (20, 40),
    "café/wide.png": (4000, 20), "café/tall.png": (20, 4000), "café/line.jpg": (3000, 1),
    "café/été à la plage.jpg": (24, 24), "café/日本語の名前.png": (24, 24),
    "café/emoji 🐱.png": (24, 24),
}
# Unusable files: name -> the start of the reason the report gives.
UNUSABLE = {
    "cat/notes.txt": "not an image file name (images end in .bmp .gif .jpeg",
    "snow leopard/labels.csv": "not an image file name",
    "café/empty.jpg": "empty file",
    "cat/truncated.jpg": "cannot decode",
    "snow leopard/page.png": "not an image Pillow can read",
    "café/bomb.png": "refused as a decompression bomb",  # past Pillow's own limit
    "cat/huge.png": "9000x8000 pixels is more than the 64,000,000 allowed",  # past ours
    "cat/.thumb.png": "hidden",
    "notes only/README.txt": "not an image file name",
    "notes only": "class folder has no usable image",
}


@pytest.fixture
def catalogue_raw(tmp_path: Path) -> Path:
    """Plain images in three classes (one with a space, one non-ASCII), plus every kind of
    unusual file: USABLE and UNUSABLE."""
    raw = tmp_path / "raw"
    make_classes(raw, {"cat": 6, "snow leopard": 6, "café": 6})
    seeds = iter(range(100, 200))
    for name in ("cat/UPPER.JPG", "cat/photo.JPEG", "snow leopard/jpeg really.png",
                 "café/été à la plage.jpg"):
        save(raw, name, noise_image(next(seeds)), "JPEG", quality=95)
    for name in ("cat/Shout.PNG", "café/日本語の名前.png", "café/emoji 🐱.png"):
        save(raw, name, noise_image(next(seeds)), "PNG")
    save(raw, "cat/gray.png", noise_image(next(seeds), mode="L"), "PNG")
    save(raw, "cat/cmyk.jpg", noise_image(next(seeds), mode="CMYK"), "JPEG", quality=95)
    save(raw, "cat/alpha.png", noise_image(next(seeds), mode="RGBA"), "PNG")
    save(raw, "cat/palette.png", noise_image(next(seeds)).convert("P"), "PNG")
    save(raw, "snow leopard/sixteen bit.png", noise_image(next(seeds), mode="I;16"), "PNG")
    save(raw, "snow leopard/bitmap.bmp", noise_image(next(seeds)), "BMP")
    save(raw, "snow leopard/web.webp", noise_image(next(seeds)), "WEBP", lossless=True)
    frames = [noise_image(next(seeds)) for _ in range(3)]
    save(raw, "snow leopard/anim.gif", frames[0], "GIF", save_all=True,
         append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to view: stored 40x20, shown 20x40
    save(raw, "snow leopard/rotated.jpg", noise_image(next(seeds), (40, 20)), "JPEG",
         quality=95, exif=exif.tobytes())
    for name in ("café/wide.png", "café/tall.png"):
        save(raw, name, noise_image(next(seeds), USABLE[name]), "PNG")
    save(raw, "café/line.jpg", noise_image(next(seeds), (3000, 1)), "JPEG", quality=95)

    (raw / "cat/notes.txt").write_text("taken in the garden\n")
    (raw / "snow leopard/labels.csv").write_text("file,label\na.jpg,snow leopard\n")
    (raw / "café/empty.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    noise_image(next(seeds), (64, 64)).save(jpeg, "JPEG", quality=90)
    (raw / "cat/truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (raw / "snow leopard/page.png").write_text("<!DOCTYPE html><html>Not found</html>")
    (raw / "café/bomb.png").write_bytes(png_claiming(30000, 30000))
    (raw / "cat/huge.png").write_bytes(png_claiming(9000, 8000))
    save(raw, "cat/.thumb.png", noise_image(next(seeds)), "PNG")
    (raw / "notes only").mkdir()
    (raw / "notes only/README.txt").write_text("class list\n")
    return raw


def test_unusual_but_usable_files_are_all_used(catalogue_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, catalogue_raw, out)
    assert read_meta(out).class_names == ["café", "cat", "snow leopard"]
    rows = read_manifest(out)
    plain = {f"{c}/{c}_{i:02d}.png" for c in ("cat", "snow leopard", "café") for i in range(6)}
    assert {r["path"] for r in rows} == plain | set(USABLE)
    assert all(r["label"] == r["path"].split("/")[0] for r in rows)
    # The shards hold exactly what load_image makes of each file, names included.
    check_shards_match_files(catalogue_raw, out)
    sizes = {(s["class"], s["width"], s["height"])
             for s in read_report(out)["image_sizes"]["sizes"]}
    for name, (width, height) in USABLE.items():
        assert (name.split("/")[0], width, height) in sizes, name


def test_unusable_files_are_skipped_with_their_reason(catalogue_raw: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, catalogue_raw, out)
    reasons = {s["path"]: s["reason"] for s in read_report(out)["skipped"]}
    assert reasons.keys() == UNUSABLE.keys()
    for name, reason in UNUSABLE.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert not {r["path"] for r in read_manifest(out)} & UNUSABLE.keys()


# --- duplicates: the same picture, never a look-alike ----------------------------------------


def scan_like(seed: int, size: int = 96) -> Image.Image:
    """A scan-like picture: the same dark background and bright oval outline as every
    other, with its own inner texture (coarse blobs and fine grain), as MRI slices,
    X-rays or microscopy share a layout."""
    rng = np.random.default_rng(seed)
    blobs = Image.fromarray(rng.integers(40, 200, (6, 6), dtype=np.uint8))
    tissue = np.asarray(blobs.resize((size, size), Image.Resampling.BICUBIC), np.float64)
    tissue += rng.normal(0, 12, (size, size))
    yy, xx = np.mgrid[:size, :size] / size
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02, 2)
    r = ((xx - cx) / 0.36) ** 2 + ((yy - cy) / 0.42) ** 2
    a = np.where(r < 1, np.where(r >= 0.85, 235.0, tissue), 0.0) + rng.normal(0, 3, r.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


def test_look_alike_scans_lose_nothing_and_form_no_group(tmp_path: Path) -> None:
    from imgclf.data.duplicates import NEAR_DUPLICATE_BITS, candidate_pairs
    from imgclf.data.images import dhash

    raw = tmp_path / "raw"
    names = ["glioma", "meningioma", "pituitary", "none"]
    for c, name in enumerate(names):
        for i in range(15):
            save(raw, f"{name}/{i:02d}.jpg", scan_like(c * 100 + i), "JPEG", quality=90)
    data = DataParams(image_size=64)
    out = tmp_path / "out"
    split_stage.run(data, SPLIT, raw, out)
    report = read_report(out)
    assert report["images"] == 60
    assert report["skipped"] == []
    assert report["duplicate_groups"] == [] and report["largest_groups"] == []
    # They look alike: the dHash alone makes many candidate pairs, that the thumbnails
    # then refuse.
    hashes = [dhash(load_image(raw / r["path"], 64)) for r in read_manifest(out)]
    assert len(candidate_pairs(np.array(hashes, np.uint64), NEAR_DUPLICATE_BITS)) > 20


def photo_like(seed: int, size: int = 160) -> Image.Image:
    """A smooth colour picture with some grain, like a photo at a distance."""
    rng = np.random.default_rng(seed)
    a = Image.fromarray(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8))
    a = np.asarray(a.resize((size, size), Image.Resampling.BICUBIC), np.float64)
    return Image.fromarray(np.clip(a + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8))


def test_real_near_copies_are_one_group_and_a_mirror_image_is_not(tmp_path: Path) -> None:
    from PIL import ImageEnhance, ImageOps

    raw = tmp_path / "raw"
    make_classes(raw, {"a": 8, "b": 8})
    photo = photo_like(1)
    save(raw, "a/photo.png", photo, "PNG")
    save(raw, "a/reencoded.jpg", photo, "JPEG", quality=60)
    save(raw, "a/resized.png", photo.resize((80, 80)), "PNG")
    save(raw, "a/cropped.png", photo.crop((4, 4, 160, 160)), "PNG")  # 2.5% off two sides
    save(raw, "a/brighter.jpg", ImageEnhance.Brightness(photo).enhance(1.25), "JPEG")
    save(raw, "a/mirror.png", ImageOps.mirror(photo), "PNG")
    save(raw, "b/other.png", photo_like(2), "PNG")
    out = tmp_path / "out"
    split_stage.run(DataParams(image_size=64), SPLIT, raw, out)
    groups = read_report(out)["duplicate_groups"]
    assert sorted(map(sorted, groups)) == [sorted(
        ["a/photo.png", "a/reencoded.jpg", "a/resized.png", "a/cropped.png", "a/brighter.jpg"])]
    split_of = {r["path"]: r["split"] for r in read_manifest(out)}
    assert len(split_of) == 16 + 7
    assert len({split_of[p] for p in groups[0]}) == 1


def test_near_duplicates_zero_groups_byte_identical_files_only(messy_raw: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT.model_copy(update={"near_duplicates": 0.0}), messy_raw, out)
    groups = sorted(sorted(g) for g in read_report(out)["duplicate_groups"])
    assert groups == [["cat/cat_00.png", "cat/copy_of_00.png"],
                      ["cat/shared.png", "fox/shared.png"]]


# --- every input accounted for ------------------------------------------------------------


def test_sub_folders_passed_over_are_in_the_report(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 4, "b": 4})
    (raw / "a" / ".cache").mkdir()
    (raw / "a" / ".cache" / "x.png").write_bytes(noise_png(800))
    (raw / "b" / "more").symlink_to(raw / "a", target_is_directory=True)
    (raw / "b" / "empty_sub").mkdir()
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, raw, out)
    reasons = {s["path"]: s["reason"] for s in read_report(out)["skipped"]}
    assert reasons == {"a/.cache": "hidden", "b/more": "link to a folder"}
    assert len(read_manifest(out)) == 8


def test_empty_class_folder_and_large_losses_are_warned_on_the_console(
        messy_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT.model_copy(update={"cross_class_duplicates": "drop"}),
                    messy_raw, out)
    err = capsys.readouterr().err
    where = f"; see {out / 'report.json'}"
    lines = [line for line in err.splitlines() if line.startswith("split: warning:")]
    assert lines == [
        "split: warning: class folder 'empty_class': empty class folder; it is left out" + where,
        "split: warning: class 'cat': 2 of 13 files (15%) set aside: 1 empty file, "
        "1 the same image is in another class" + where,
        "split: warning: class 'dog': 1 of 12 files (8%) set aside: "
        "1 not an image Pillow can read" + where,
        "split: warning: class 'fox': 3 of 14 files (21%) set aside: 1 hidden, "
        "1 link to outside the dataset, 1 the same image is in another class" + where,
    ]


def test_kept_cross_class_pictures_are_warned_on_the_console(
        messy_raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split_stage.run(DATA, SPLIT, messy_raw, tmp_path / "out")
    err = capsys.readouterr().err
    assert ("split: warning: 2 images in 1 group(s) are the same picture as one in another "
            "class, e.g. cat/shared.png, fox/shared.png; kept, each with its label, in one "
            "split (split.cross_class_duplicates: drop leaves them out)") in err


def jpeg_with_broken_exif(seed: int) -> bytes:
    """A JPEG whose EXIF block is cut short: Pillow warns while reading it."""
    exif = Image.Exif()
    exif[0x010F] = "Camera maker " * 5
    buf = io.BytesIO()
    noise_image(seed).save(buf, "JPEG", quality=95, exif=exif.tobytes()[:-20])
    return buf.getvalue()


def test_library_warnings_are_the_files_line_in_the_report_not_the_console(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    make_classes(raw, {"a": 4, "b": 4})
    (raw / "a" / "exif.jpg").write_bytes(jpeg_with_broken_exif(3))
    out = tmp_path / "out"
    split_stage.run(DATA, SPLIT, raw, out)
    said = read_report(out)["warnings"]
    assert [w["path"] for w in said] == ["a/exif.jpg"]
    assert "Truncated File Read" in said[0]["warning"]
    assert "a/exif.jpg" in {r["path"] for r in read_manifest(out)}  # still used
    captured = capsys.readouterr()
    assert "Truncated" not in captured.err + captured.out


# --- the real photos --------------------------------------------------------------------------

# The duplicates of the animals set: one byte-identical pair of cats, and five pairs of
# snakes that are one photo twice (re-encoded, or resized with a banner added).
ANIMALS_SPLIT_SHA256 = "94eb7fa6e1868de5cb0cd9d1ec86c9fed752177c78404095ecebf3fc54c60031"
ANIMAL_GROUPS = [
    ["cats/0_0255.jpg", "cats/0_0674.jpg"], ["snakes/2_0038.jpg", "snakes/2_0215.jpg"],
    ["snakes/2_0056.jpg", "snakes/2_0672.jpg"], ["snakes/2_0184.jpg", "snakes/2_0906.jpg"],
    ["snakes/2_0582.jpg", "snakes/2_0914.jpg"], ["snakes/2_0701.jpg", "snakes/2_0806.jpg"],
]


@pytest.mark.realdata
@pytest.mark.slow
def test_animals_groups_and_split_are_those_of_the_photos(tmp_path: Path,
                                                          real_photos: Path) -> None:
    """At the default params: the 6 pairs above and nothing else, and the split that
    dealing these groups gives (the split the animals have always had)."""
    from imgclf.data.stratify import stratified_group_split
    from imgclf.params import Params

    p = Params()
    out = tmp_path / "out"
    split_stage.run(p.data, p.split, real_photos, out)
    report = read_report(out)
    assert sorted(map(sorted, report["duplicate_groups"])) == ANIMAL_GROUPS
    assert {s["path"] for s in report["skipped"]} == {"SHA256SUMS", "SOURCE.md"}
    rows = sorted(read_manifest(out), key=lambda r: r["path"])  # the scan's order
    assert len(rows) == 3000
    names = ["cats", "dogs", "snakes"]
    labels = np.array([names.index(r["label"]) for r in rows])
    group_of = {path: g for g, members in enumerate(ANIMAL_GROUPS) for path in members}
    ids: dict[object, int] = {}
    groups = np.array([ids.setdefault(group_of.get(r["path"], r["path"]), len(ids))
                       for r in rows])
    expected = stratified_group_split(labels, groups, (p.split.train, p.split.val,
                                                       p.split.test), p.split.seed, names)
    assert [r["split"] for r in rows] == [SPLITS[s] for s in expected]
    # ... and that is the split the animals had before this grouping (c88f3a4's split
    # stage gives the same digest of "path,split" lines), pinned here.
    listing = "\n".join(f"{r['path']},{r['split']}" for r in rows).encode()
    assert hashlib.sha256(listing).hexdigest() == ANIMALS_SPLIT_SHA256
    # The shards keep the photos' own bytes (256 px JPEGs, within 2x of 224): about 1.03x.
    assert read_meta(out).stored == {"source jpeg": 3000}
    shards = sum(f.stat().st_size for f in out.glob("*.tfrecord"))
    assert shards <= 1.5 * sum(f.stat().st_size for f in real_photos.rglob("*.jpg"))
