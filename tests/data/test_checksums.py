"""sha256 manifests: parsing, hashing, verifying, and the pinned manifest of the default set."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

import pytest

from imgclf.data.checksums import (
    Verification,
    format_manifest,
    parse_manifest,
    read_manifest,
    verify_folder,
)
from imgclf.errors import UserError
from imgclf.fsutil import sha256_file

A = "a" * 64
B = "B" * 64


def test_parse_strips_dot_slash_and_lowercases() -> None:
    text = f"{A}  ./cats/1.jpg\n{B} *dogs/2.jpg\r\n\n# comment\n"
    assert parse_manifest(text) == {"cats/1.jpg": A, "dogs/2.jpg": B.lower()}


def test_format_round_trips() -> None:
    manifest = {"dogs/2.jpg": A, "cats/1.jpg": "b" * 64}
    text = format_manifest(manifest)
    assert text.splitlines()[0] == f"{'b' * 64}  ./cats/1.jpg"
    assert parse_manifest(text) == manifest


@pytest.mark.parametrize(("text", "match"), [
    ("abc  ./cats/1.jpg\n", "line 1: expected"),
    (f"{A}  ./cats/1.jpg\n{A}  ../etc/passwd\n", "line 2: '../etc/passwd' is not a relative"),
    (f"{A}  /etc/passwd\n", "not a relative path"),
    (f"{A}  ./x.jpg\n{A}  x.jpg\n", "line 2: 'x.jpg' is listed twice"),
    ("\n# nothing\n", "lists no files"),
])
def test_parse_rejects_bad_manifests(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        parse_manifest(text, origin="m.sha256")


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    assert sha256_file(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_verify_folder_names_mismatched_and_missing_files(tmp_path: Path, kit) -> None:
    files_ = kit.dataset_files({"cats": 2, "dogs": 2})
    manifest = parse_manifest(kit.manifest_of(files_))
    kit.write_tree(tmp_path, files_)
    assert verify_folder(tmp_path, manifest).ok
    (tmp_path / "cats/cats_001.jpg").write_bytes(b"tampered")
    (tmp_path / "dogs/dogs_000.jpg").unlink()
    (tmp_path / "dogs/extra.jpg").write_bytes(b"not listed, ignored")
    result = verify_folder(tmp_path, manifest)
    assert result == Verification(missing=["dogs/dogs_000.jpg"], mismatched=["cats/cats_001.jpg"])
    assert not result.ok
    message = result.describe()
    assert "cats/cats_001.jpg" in message and "dogs/dogs_000.jpg" in message


def test_describe_shows_the_first_few_and_a_count() -> None:
    result = Verification(mismatched=[f"c/{i}.jpg" for i in range(12)])
    message = result.describe(limit=5)
    assert message.startswith("12 file(s) differ")
    assert "c/4.jpg" in message and "c/5.jpg" not in message and "and 7 more" in message


def test_read_manifest_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.sha256: cannot read"):
        read_manifest(tmp_path / "nope.sha256")


def test_pinned_animals_manifest() -> None:
    manifest = read_manifest(files("imgclf.data") / "animals.sha256")
    assert len(manifest) == 3000
    classes = {name.split("/")[0] for name in manifest}
    assert classes == {"cats", "dogs", "snakes"}
    assert sum(name.startswith("cats/") for name in manifest) == 1000
