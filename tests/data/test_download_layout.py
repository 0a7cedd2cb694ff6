"""Download keeps every file of a local dataset or says why not, and split reports it.

Before, ``download`` copied only the files directly inside each class folder: a class
folder's sub-folders (``cats/2019/*.jpg``), hidden files, files beside the class
folders and empty class folders vanished without a word, and a link to a file outside
the dataset had that file's content copied into data/raw and the DVC cache.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.copying import list_classes
from imgclf.data.layout import SKIPPED_LIST, read_skipped
from imgclf.errors import UserError

SECRET = b"secret bytes that must never leave their folder"


def _png(path: Path, colour: tuple[int, int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(-40, 40, (20, 20, 3))
    Image.fromarray(np.clip(noise + np.array(colour), 0, 255).astype(np.uint8)).save(path)


def _dataset(root: Path, outside: Path) -> Path:
    """Two classes of 8 images each, spread over sub-folders, and every awkward entry."""
    for i in range(4):
        _png(root / f"cats/c{i}.png", (200, 40, 40), i)
        _png(root / f"dogs/d{i}.png", (40, 40, 200), 10 + i)
    for i in range(4, 7):
        _png(root / f"cats/2019/c{i}.png", (200, 40, 40), i)
        _png(root / f"dogs/2020/d{i}.png", (40, 40, 200), 10 + i)
    _png(root / "cats/2019/deeper/c7.png", (200, 40, 40), 7)
    _png(root / "cats/.thumbs/t.png", (200, 40, 40), 8)  # a hidden folder
    (root / "cats/.DS_Store").write_bytes(b"finder")
    (root / "cats/notes.txt").write_text("not an image")
    (root / "cats/empty").mkdir()
    (root / "eels").mkdir()  # an empty class folder
    (root / ".git-like").mkdir()
    (root / ".git-like/HEAD").write_text("ref")
    (root / "README.md").write_text("beside the class folders")
    outside.write_bytes(SECRET)
    (root / "dogs/outside.png").symlink_to(outside)
    (root / "dogs/alias.png").symlink_to("2020/d4.png")  # inside the dataset: copied
    (root / "cats/folder_link").symlink_to("../dogs/2020", target_is_directory=True)
    return root


def _entries(root: Path) -> list[tuple[str, bool]]:
    """``(path, is an empty folder)`` of every file, link and empty folder below ``root``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        if here != root and not dirnames and not filenames:
            out.append((rel, True))
        out += [((here / n).relative_to(root).as_posix(), False) for n in filenames]
        out += [((here / d).relative_to(root).as_posix(), False) for d in dirnames
                if (here / d).is_symlink()]
    return sorted(out)


def _accounted(path: str, skipped: dict[str, str]) -> str | None:
    """The reason for ``path`` or the nearest folder above it, if listed."""
    parts = path.split("/")
    for n in range(len(parts), 0, -1):
        if "/".join(parts[:n]) in skipped:
            return skipped["/".join(parts[:n])]
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dvc_repro_split_accounts_for_every_entry(
        tmp_path: Path, pipeline_repo: Callable[..., Path],
        git_environ: dict[str, str]) -> None:
    source = _dataset(tmp_path / "photos", tmp_path / "private.png")
    repo = pipeline_repo(tmp_path / "repo", source, {
        "data": {"image_size": 16}, "model": {"arch": "small"},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0}})
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "split"], cwd=repo,
                          env=git_environ, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log

    with open(repo / "data/prepared/manifest.csv", newline="", encoding="utf-8") as f:
        kept = {row["path"] for row in csv.DictReader(f)}
    report = json.loads((repo / "data/prepared/report.json").read_text(encoding="utf-8"))
    skipped = {row["path"]: row["reason"] for row in report["skipped"]}
    missing = [(path, empty) for path, empty in _entries(source)
               if path not in kept and _accounted(path, skipped) is None]
    assert missing == [], (missing, report["skipped"])

    assert {"cats/2019/c4.png", "cats/2019/deeper/c7.png", "dogs/2020/d6.png",
            "dogs/alias.png"} <= kept  # sub-folders walked; a link inside is its file
    by_download = {
        "eels": "empty class folder",
        "README.md": "not inside a class folder",
        ".git-like": "hidden",
        "cats/.thumbs": "hidden",
        "cats/.DS_Store": "hidden",
        "cats/empty": "empty folder",
        "cats/folder_link": "link to a folder",
        "dogs/outside.png": "link to outside the dataset",
    }
    assert {p: skipped.get(p) for p in by_download} == {
        p: f"{r} (left out by download)" for p, r in by_download.items()}
    assert skipped["cats/notes.txt"].startswith("not an image file name")  # split's own
    assert "class folder 'eels': empty class folder (left out by download)" in log
    # The outside file's content is nowhere in the repo: not in data/raw, not in the cache.
    leaked = [p for p in repo.rglob("*") if p.is_file() and not p.is_symlink()
              and SECRET in p.read_bytes()]
    assert leaked == []


def test_listing_names_fifos_and_broken_links(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "cats/a.png", (1, 2, 3), 0)
    os.mkfifo(root / "cats/pipe.png")
    (root / "cats/broken.png").symlink_to("gone.png")
    found = list_classes(root)
    assert found.names == ["cats/a.png"]
    assert found.skipped == [{"path": "cats/broken.png", "reason": "not a regular file"},
                             {"path": "cats/pipe.png", "reason": "not a regular file"}]


def test_a_class_folder_of_hidden_files_has_no_usable_image(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "cats/a.png", (1, 2, 3), 0)
    (root / "dogs").mkdir()
    (root / "dogs/.keep").write_text("")
    assert list_classes(root).skipped == [
        {"path": "dogs/.keep", "reason": "hidden"},
        {"path": "dogs", "reason": "class folder has no usable image"}]


def test_a_damaged_list_is_named(tmp_path: Path) -> None:
    (tmp_path / SKIPPED_LIST).write_text("[1, 2")
    with pytest.raises(UserError, match=r"\.skipped\.json: not download's list"):
        read_skipped(tmp_path)
    assert read_skipped(tmp_path / "nowhere") == []


def test_split_folders_are_walked_too(tmp_path: Path) -> None:
    from imgclf.data.copying import copy_split_classes

    root = tmp_path / "data"
    _png(root / "train/cats/2019/a.png", (1, 2, 3), 0)
    _png(root / "test/dogs/b.png", (1, 2, 3), 1)
    (root / "train/loose.png").write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"x")
    counts, _ = copy_split_classes(root, {"train": "train", "test": "test"},
                                       tmp_path / "out")
    assert counts == {"cats": 1, "dogs": 1}
    assert (tmp_path / "out/train/cats/2019/a.png").is_file()
    assert read_skipped(tmp_path / "out") == [
        {"path": ".DS_Store", "reason": "hidden (left out by download)"},
        {"path": "train/loose.png", "reason": "not inside a class folder (left out by download)"}]
