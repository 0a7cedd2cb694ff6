"""sha256 manifests: read them, hash files, verify a folder against one.

A manifest is what ``sha256sum ./*/*`` prints: one ``<64 hex digits>  ./<class>/<file>``
line per file. Pinning a dataset this way means a changed, truncated or substituted
file is caught before it silently changes every result downstream.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from imgclf.errors import UserError
from imgclf.fsutil import sha256_file
from imgclf.progress import progress

_LINE_RE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")

# A manifest maps a relative POSIX path ("cats/0_0001.jpg") to its lower-case sha256.
Manifest = dict[str, str]


def parse_manifest(text: str, origin: str = "manifest") -> Manifest:
    """Parse manifest text; raise ``UserError`` naming ``origin`` and the line of a bad entry."""
    manifest: Manifest = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE_RE.match(line.rstrip("\r"))
        if not match:
            raise UserError(f"{origin}, line {number}: expected '<sha256>  ./<class>/<file>'")
        digest, name = match.group(1).lower(), match.group(2)
        path = PurePosixPath(name[2:] if name.startswith("./") else name)
        # Entries become paths under the output folder, so they must stay inside it.
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise UserError(f"{origin}, line {number}: {name!r} is not a relative path")
        if str(path) in manifest:
            raise UserError(f"{origin}, line {number}: {name!r} is listed twice")
        manifest[str(path)] = digest
    if not manifest:
        raise UserError(f"{origin}: lists no files")
    return manifest


def read_manifest(path: Traversable | os.PathLike[str]) -> Manifest:
    """Read and parse a manifest file (a path, or a package resource)."""
    resource = Path(path) if isinstance(path, str | os.PathLike) else path
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    return parse_manifest(text, origin=str(path))


def format_manifest(manifest: Mapping[str, str]) -> str:
    """The manifest as ``sha256sum`` would print it, sorted by path."""
    return "".join(f"{digest}  ./{name}\n" for name, digest in sorted(manifest.items()))


@dataclass(frozen=True)
class Verification:
    """The outcome of checking files against a manifest; empty lists mean all is well."""

    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def describe(self, limit: int = 5) -> str:
        """One line naming the first ``limit`` bad files of each kind and how many there are."""
        parts = []
        for label, names in (("differ from the pinned checksum", self.mismatched),
                             ("are missing", self.missing)):
            if names:
                shown = ", ".join(names[:limit])
                more = f" and {len(names) - limit} more" if len(names) > limit else ""
                parts.append(f"{len(names)} file(s) {label}: {shown}{more}")
        return "; ".join(parts) if parts else "all files match"


def verify_folder(root: str | os.PathLike[str], manifest: Mapping[str, str],
                  desc: str = "verifying") -> Verification:
    """Hash every file of ``manifest`` under ``root``; files not in the manifest are ignored."""
    root = Path(root)
    missing, mismatched = [], []
    for name, expected in progress(sorted(manifest.items()), desc=desc, unit="file"):
        path = root / name
        if not path.is_file():
            missing.append(name)
        elif sha256_file(path) != expected:
            mismatched.append(name)
    return Verification(missing=missing, mismatched=mismatched)
