"""Safe extraction of zip and tar (.gz, .bz2, .xz) archives.

An archive from the internet is untrusted: a member named ``../../.bashrc``, an
absolute path, a symlink pointing outside the folder or a device node could write
anywhere. Every member is checked *before* anything is written, and members are
extracted by hand (regular files and folders only, plain permissions) instead of
relying on ``tarfile``'s extraction filters, whose availability depends on the
Python patch release.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from imgclf.errors import UserError
from imgclf.progress import progress

Format = Literal["zip", "tar"]

# Leading bytes of the formats we read; tar itself has "ustar" at offset 257.
_MAGIC: dict[bytes, Format] = {
    b"PK\x03\x04": "zip", b"PK\x05\x06": "zip",  # zip with members / empty zip
    b"\x1f\x8b": "tar", b"BZh": "tar", b"\xfd7zXZ\x00": "tar",  # .tar.gz / .bz2 / .xz
}


def detect_format(path: str | os.PathLike[str]) -> Format:
    """Tell a zip from a tar archive by its first bytes, not its name (URLs often have none)."""
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return fmt
    if head[257:262] == b"ustar":  # an uncompressed tar
        return "tar"
    if zipfile.is_zipfile(path):  # a zip with a prefix, e.g. self-extracting
        return "zip"
    hint = ""
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        hint = " (it is an HTML page: the URL may need a login or point at a web page)"
    raise UserError(f"{path}: not a zip or tar archive{hint}; data.source must name a "
                    ".zip, .tar, .tar.gz, .tar.bz2 or .tar.xz archive or a folder")


def unsafe_reason(name: str) -> str | None:
    """Why a member name could escape the extraction folder, or None if it is safe."""
    if not name or "\x00" in name:
        return "has an empty or invalid name"
    # Zips made on Windows may use backslashes; treat them as separators too.
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return "has an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "has a '..' component"
    return None


def _refuse(archive: Path, member: str, reason: str) -> UserError:
    return UserError(f"{archive}: refusing to extract: member {member!r} {reason}; "
                     "the archive is unsafe or damaged (nothing was extracted)")


Opener = Callable[[], IO[bytes] | None]
# (member name, opener of its bytes, or None for a folder)
Member = tuple[str, Opener | None]


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[Member]:
    """Every zip member, after checking them all."""
    members: list[Member] = []
    for info in zf.infolist():
        reason = unsafe_reason(info.filename)
        # Unix file-type bits, present when the zip was made on Unix (0 otherwise).
        mode = info.external_attr >> 16
        if reason is None and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            reason = "is a symlink" if stat.S_ISLNK(mode) else "is not a regular file or folder"
        if reason:
            raise _refuse(archive, info.filename, reason)
        members.append((info.filename, None if info.is_dir() else partial(zf.open, info)))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[Member]:
    """Every tar member, after checking them all."""
    members: list[Member] = []
    for m in tf.getmembers():
        reason = unsafe_reason(m.name)
        if reason is None and (m.issym() or m.islnk()):
            reason = f"is a {'symlink' if m.issym() else 'hard link'} (to {m.linkname!r})"
        elif reason is None and not (m.isfile() or m.isdir()):
            reason = "is a device, fifo or other special file"
        if reason:
            raise _refuse(archive, m.name, reason)
        members.append((m.name, None if m.isdir() else partial(tf.extractfile, m)))
    return members


def _target(dest: Path, name: str) -> Path:
    """Where member ``name`` goes; a last guard that it stays inside ``dest``."""
    target = (dest / name.replace("\\", "/")).resolve()
    if not target.is_relative_to(dest):
        raise UserError(f"refusing to extract {name!r}: it resolves outside {dest}")
    return target


def _write(dest: Path, members: list[Member]) -> None:
    """Write checked members as plain files and folders (no modes, owners or links kept)."""
    for name, opener in progress(members, desc="extracting", unit="file"):
        target = _target(dest, name)
        if opener is None:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = opener()
        if src is None:  # not reachable for a checked regular member
            raise UserError(f"cannot read archive member {name!r}")
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Extract a zip or tar archive into the existing folder ``dest``, refusing unsafe members.

    All members are checked first, so an unsafe archive writes nothing at all.
    """
    archive, dest = Path(archive), Path(dest).resolve()
    try:
        if detect_format(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                _write(dest, _zip_members(archive, zf))
        else:
            with tarfile.open(archive, "r:*") as tf:
                _write(dest, _tar_members(archive, tf))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError) as exc:
        raise UserError(f"{archive}: damaged or truncated archive ({exc}); "
                        "download it again") from None
