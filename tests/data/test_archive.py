"""Safe archive extraction: formats, round trips, and refusal of unsafe members."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from imgclf.data.archive import detect_format, extract, unsafe_reason
from imgclf.errors import UserError

FILES = {"cats/a.jpg": b"cat-a", "cats/b.jpg": b"cat-b", "dogs/c.jpg": b"dog-c"}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_round_trip(tmp_path: Path, kit, mode: str) -> None:
    archive = kit.make_tar(tmp_path / "d.tar", FILES, prefix="./", mode=mode)
    assert detect_format(archive) == "tar"
    (tmp_path / "out").mkdir()
    extract(archive, tmp_path / "out")
    assert kit.read_tree(tmp_path / "out") == FILES


def test_zip_round_trip(tmp_path: Path, kit) -> None:
    archive = kit.make_zip(tmp_path / "d.bin", FILES, prefix="Top/")  # format from bytes, not name
    assert detect_format(archive) == "zip"
    (tmp_path / "out").mkdir()
    extract(archive, tmp_path / "out")
    assert kit.read_tree(tmp_path / "out") == {f"Top/{k}": v for k, v in FILES.items()}


def test_extracted_files_get_plain_permissions(tmp_path: Path) -> None:
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("x/run.sh")
        info.size, info.mode = 2, 0o4777  # setuid, world-writable
        tf.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "out").mkdir()
    extract(archive, tmp_path / "out")
    mode = (tmp_path / "out/x/run.sh").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_IWOTH | stat.S_IXUSR)


@pytest.mark.parametrize(("content", "match"), [
    (b"just some text\n" * 50, "not a zip or tar archive"),
    (b"<!DOCTYPE html><html>login</html>", "HTML page"),
])
def test_not_an_archive(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "d.zip"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        extract(path, tmp_path)


def test_truncated_archive(tmp_path: Path, kit) -> None:
    archive = kit.make_tar(tmp_path / "d.tar.gz", {"c/x.jpg": bytes(range(256)) * 400})
    archive.write_bytes(archive.read_bytes()[:200])
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="damaged or truncated"):
        extract(archive, tmp_path / "out")


@pytest.mark.parametrize(("name", "reason"), [
    ("../evil", "'..'"), ("a/../../evil", "'..'"), ("/etc/passwd", "absolute"),
    ("C:\\Windows\\x", "absolute"), ("..\\evil", "'..'"), ("", "empty"), ("ok/fine.jpg", None),
])
def test_unsafe_reason(name: str, reason: str | None) -> None:
    result = unsafe_reason(name)
    assert result == reason if reason is None else reason in result


def _tar_with(path: Path, bad: tarfile.TarInfo) -> Path:
    """A tar whose first member is fine and whose last is ``bad``."""
    with tarfile.open(path, "w:gz") as tf:
        good = tarfile.TarInfo("cats/a.jpg")
        good.size = 3
        tf.addfile(good, io.BytesIO(b"cat"))
        tf.addfile(bad, io.BytesIO(b"bad") if bad.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = 3 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(("bad", "match"), [
    (_info("../evil"), "'../evil' has a '..'"),
    (_info("/tmp/evil"), "'/tmp/evil' has an absolute path"),
    (_info("cats/link", tarfile.SYMTYPE, "/etc/passwd"), "'cats/link' is a symlink"),
    (_info("cats/hard", tarfile.LNKTYPE, "cats/a.jpg"), "'cats/hard' is a hard link"),
    (_info("cats/dev", tarfile.CHRTYPE), "device, fifo"),
    (_info("cats/fifo", tarfile.FIFOTYPE), "device, fifo"),
])
def test_unsafe_tar_members_refused_before_writing(tmp_path: Path, bad, match: str) -> None:
    archive = _tar_with(tmp_path / "evil.tar.gz", bad)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=match):
        extract(archive, out)
    assert list(out.iterdir()) == []  # not even the safe first member
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(("name", "mode", "match"), [
    ("../evil", 0o100644, "has a '..'"),
    ("/abs/evil", 0o100644, "absolute"),
    ("cats/link", stat.S_IFLNK | 0o777, "is a symlink"),
])
def test_unsafe_zip_members_refused_before_writing(tmp_path: Path, name: str, mode: int,
                                                   match: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cats/a.jpg", b"cat")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, b"/etc/passwd")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=match):
        extract(archive, out)
    assert list(out.iterdir()) == []
