"""The ``source`` stage (imgclf.data.fingerprint) on real folders, archives and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgclf.data.fingerprint import fingerprint, run
from imgclf.errors import UserError
from imgclf.params import DEFAULT_SOURCE, DataParams


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/{cats/a.jpg, cats/b.jpg, dogs/c.jpg} with fixed times."""
    root = tmp_path / "photos"
    for name in ("cats/a.jpg", "cats/b.jpg", "dogs/c.jpg"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    return root


def test_same_folder_gives_the_same_fingerprint(photos: Path) -> None:
    first = fingerprint(str(photos))
    assert first == fingerprint(str(photos))
    assert first["kind"] == "folder" and first["files"] == 3 and first["source"] == str(photos)
    assert len(first["sha256"]) == 64


def test_written_file_is_byte_identical_for_an_unchanged_source(photos: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "data" / "source.json"
    run(DataParams(source=str(photos)), out)
    before = out.read_bytes()
    time.sleep(0.01)
    run(DataParams(source=str(photos)), out)
    assert out.read_bytes() == before
    assert list(json.loads(before)) == sorted(json.loads(before))  # sorted keys
    assert [p.name for p in out.parent.iterdir()] == ["source.json"]  # no temporary left


@pytest.mark.parametrize("change", ["add", "remove", "edit", "touch", "rename", "nested",
                                    "new class"])
def test_a_change_to_the_folder_changes_it(photos: Path, change: str) -> None:
    before = fingerprint(str(photos))
    a = photos / "cats/a.jpg"
    if change == "add":
        (photos / "dogs/d.jpg").write_bytes(b"new")
    elif change == "remove":
        a.unlink()
    elif change == "edit":
        a.write_bytes(b"another picture")
    elif change == "touch":  # same bytes, new modification time
        os.utime(a, ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))
    elif change == "rename":
        a.rename(photos / "cats/z.jpg")
    elif change == "nested":
        (photos / "cats/more").mkdir()
        (photos / "cats/more/e.jpg").write_bytes(b"e")
    else:
        (photos / "eels").mkdir()
        (photos / "eels/f.jpg").write_bytes(b"f")
    after = fingerprint(str(photos))
    assert after["sha256"] != before["sha256"]
    expected = {"add": 4, "remove": 2, "nested": 4, "new class": 4}.get(change, 3)
    assert after["files"] == expected


def test_hidden_files_and_dangling_links_are_ignored(photos: Path) -> None:
    before = fingerprint(str(photos))
    (photos / "cats/.DS_Store").write_bytes(b"finder")
    (photos / ".git").mkdir()
    (photos / ".git/index").write_bytes(b"x")
    (photos / "dogs/gone.jpg").symlink_to(photos / "nowhere.jpg")
    assert fingerprint(str(photos)) == before


def test_links_are_followed_and_loops_end(photos: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "g.jpg").write_bytes(b"g")
    before = fingerprint(str(photos))
    (photos / "geese").symlink_to(elsewhere, target_is_directory=True)
    (photos / "cats/loop").symlink_to(photos, target_is_directory=True)
    linked = fingerprint(str(photos))
    assert linked["files"] >= 4 and linked != before
    (elsewhere / "g.jpg").write_bytes(b"edited goose")  # a change behind the link counts
    assert fingerprint(str(photos)) != linked


def test_relative_path_and_file_url_name_the_same_folder(photos: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos.parent)
    absolute = fingerprint(str(photos))
    assert fingerprint("photos")["sha256"] == absolute["sha256"]
    assert fingerprint(photos.as_uri())["sha256"] == absolute["sha256"]


def test_archive_file_by_size_and_time(tmp_path: Path) -> None:
    archive = tmp_path / "animals.zip"
    archive.write_bytes(b"PK\x03\x04 zip bytes")
    os.utime(archive, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    fp = fingerprint(str(archive))
    assert fp == {"source": str(archive), "kind": "archive", "size": 14,
                  "mtime_ns": 1_700_000_000_000_000_000}
    assert fingerprint(archive.as_uri()) == fp
    os.utime(archive, ns=(1_700_000_000_000_000_000, 1_800_000_000_000_000_000))
    assert fingerprint(str(archive))["mtime_ns"] == 1_800_000_000_000_000_000


def test_remote_sources_are_their_canonical_name() -> None:
    assert fingerprint("kaggle:Owner/Some-Data") == {"source": "kaggle:owner/some-data",
                                                     "kind": "kaggle"}
    url = "https://example.com/d.zip"
    assert fingerprint(f" {url} ") == {"source": url, "kind": "url"}


def test_the_mirror_does_not_matter_for_the_known_dataset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "source.json"
    monkeypatch.delenv("IMGCLF_DATA_MIRROR", raising=False)
    run(DataParams(source=DEFAULT_SOURCE), out)
    plain = out.read_bytes()
    for name, content in (("mirror_a", b"one"), ("mirror_b", b"other")):
        mirror = tmp_path / name / "cats"
        mirror.mkdir(parents=True)
        (mirror / "0_0001.jpg").write_bytes(content)
        monkeypatch.setenv("IMGCLF_DATA_MIRROR", str(mirror.parent))
        run(DataParams(source=DEFAULT_SOURCE), out)
        assert out.read_bytes() == plain
    assert json.loads(plain) == {"source": DEFAULT_SOURCE, "kind": "kaggle"}


def test_missing_local_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^data\.source: .*nowhere does not exist; give a "):
        fingerprint(str(tmp_path / "nowhere"))


def test_bad_source_is_reported_as_download_would(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="ftp:// scheme is not supported"):
        fingerprint("ftp://example.com/d.zip")


# Every file opened and folder listed while the list is set (audit hooks stay for the
# process's life, so the one hook records only while a test asks for it).
_AUDITED: list[tuple[str, tuple]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _AUDITED is not None and event in ("open", "os.scandir", "os.listdir"):
        _AUDITED.append((event, args))


sys.addaudithook(_audit)


def test_three_thousand_files_are_listed_not_read(tmp_path: Path) -> None:
    # Fast because no file is opened: one listing per folder, sizes and times from it.
    global _AUDITED
    root = tmp_path / "big"
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(1000):
            (root / f"class{c}" / f"{i:04d}.jpg").write_bytes(b"x" * (i % 7))
    _AUDITED = []
    try:
        fp = fingerprint(str(root))
        events = _AUDITED
    finally:
        _AUDITED = None
    assert fp["files"] == 3000
    assert [e for e, _ in events if e == "open"] == []
    listed = sorted(os.fspath(args[0]) for e, args in events if e == "os.scandir")
    assert listed == sorted(str(f) for f in (root, *root.iterdir()))


def test_cli_writes_the_file_without_importing_tensorflow(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(f"data:\n  source: {photos}\n")
    code = ("import sys; from imgclf import cli; rc = cli.main(['source']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'PIL') if m in sys.modules]; "
            "print(heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    written = json.loads((tmp_path / "data/source.json").read_text())
    assert written == fingerprint(str(photos))
    assert proc.stderr.strip() == (f"source: {photos} (3 files, sha256 "
                                   f"{written['sha256'][:12]}) -> data/source.json")


def test_cli_missing_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(f"data:\n  source: {tmp_path / 'gone'}\n")
    proc = subprocess.run([sys.executable, "-m", "imgclf", "source"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgclf source: error: data.source: ")
    assert not (tmp_path / "data/source.json").exists()
