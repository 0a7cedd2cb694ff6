"""The ``download`` stage: put the dataset named by ``data.source`` into ``OUT/<class>/<file>``.

Where the files come from, in order:

1. For a *known* dataset (one pinned in ``KNOWN_DATASETS`` by a sha256 manifest), the
   folder named by ``$IMGCLF_DATA_MIRROR``, if set: offline machines, CI and
   benchmarks use a local copy instead of the network.
2. A local folder (copied, never moved) or a local archive (``file://`` URL or path).
3. The network: ``kaggle:OWNER/NAME`` is fetched as a zip from
   ``$IMGCLF_KAGGLE_URL/OWNER/NAME`` (default ``https://www.kaggle.com/api/v1/datasets/
   download``; the variable exists so tests can use a local server), with HTTP basic
   auth from ``KAGGLE_USERNAME``/``KAGGLE_KEY`` (environment first, then ``./.env``)
   when they are set; ``https://`` and ``http://`` URLs are fetched as they are.

Every file of a known dataset is hashed and must match its manifest, whatever the
origin; files the manifest does not list are left out. The output is built in a
temporary folder and renamed into place, so an interrupted or failed run leaves the
previous output untouched.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from urllib.parse import urlsplit

from imgclf import env
from imgclf.data.archive import extract
from imgclf.data.checksums import read_manifest
from imgclf.data.copying import (
    Listing,
    copy_classes,
    copy_split_classes,
    copy_verified,
    describe_listing,
    find_class_root,
)
from imgclf.data.kaggle import kaggle_credentials, kaggle_url
from imgclf.data.layout import given_splits
from imgclf.data.sources import (
    KaggleSource,
    LocalSource,
    Source,
    UrlSource,
    parse_source,
)
from imgclf.errors import UserError
from imgclf.fetch import USER_AGENT, fetch_url, host_of, http_timeout
from imgclf.fsutil import atomic_dir
from imgclf.params import DEFAULT_SOURCE, DataParams

MIRROR_ENV = "IMGCLF_DATA_MIRROR"


@dataclass(frozen=True)
class KnownDataset:
    """A dataset whose exact files are pinned by a sha256 manifest."""

    manifest: Traversable | Path
    title: str


# Keyed by the canonical source (``Source.key``). Tests pass their own to ``run(known=...)``.
KNOWN_DATASETS: dict[str, KnownDataset] = {
    DEFAULT_SOURCE: KnownDataset(files("imgclf.data") / "animals.sha256",
                                 "Animal Image Dataset (cats, dogs, snakes; 3,000 images)"),
}


def run(data: DataParams, out: str | os.PathLike[str], *,
        known: Mapping[str, KnownDataset] | None = None, timeout: float | None = None) -> None:
    """Fetch ``data.source`` into ``out`` (replacing it whole); raise ``UserError`` on bad input.

    ``timeout`` (seconds a connection may stay silent) overrides ``$IMGCLF_HTTP_TIMEOUT``.
    """
    timeout = http_timeout(timeout)  # a bad setting fails before any work
    source = parse_source(data.source)
    dataset = (KNOWN_DATASETS if known is None else known).get(source.key)
    # Read the pinned manifest before any download, so a broken install fails fast.
    manifest = read_manifest(dataset.manifest) if dataset else None
    out = Path(out)
    with atomic_dir(out) as dest, _workdir(out) as work:
        root, origin = _obtain(source, dataset is not None, work, timeout)
        root = find_class_root(root, origin)
        layout = given_splits(root)
        found = Listing()
        if manifest is None and layout:  # train/, test/ ... kept as they are for split
            counts, found = copy_split_classes(root, layout, dest)
        elif manifest is None:
            counts, found = copy_classes(root, dest)
        else:
            fix = (f"replace the damaged files in {root}, or unset {MIRROR_ENV} to download "
                   "a fresh copy" if origin.startswith(MIRROR_ENV) else
                   "the upstream dataset may have changed; get the pinned version and point "
                   f"{MIRROR_ENV} at it")
            counts = copy_verified(root, manifest, dest, origin, fix)
    per_class = ", ".join(f"{name} {n}" for name, n in counts.items())
    checked = f", verified against {dataset.manifest.name}" if dataset else ""
    print(f"download: {sum(counts.values())} files in {len(counts)} classes ({per_class}) "
          f"from {origin} -> {out}{checked}{describe_listing(found, out)}", file=sys.stderr)


@contextmanager
def _workdir(out: Path) -> Iterator[Path]:
    """A scratch folder next to the output (same disk) for the archive and its extraction."""
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".download",
                                     dir=out.parent, ignore_cleanup_errors=True) as work:
        yield Path(work)


def _obtain(source: Source, known: bool, work: Path, timeout: float) -> tuple[Path, str]:
    """A local folder holding the dataset, and a description of where it came from."""
    mirror = env.get(MIRROR_ENV)
    if known and mirror:
        if not Path(mirror).is_dir():
            raise UserError(f"{MIRROR_ENV}={mirror}: not a folder; point it at a local copy of "
                            "the dataset (its class sub-folders) or unset it")
        return Path(mirror), f"{MIRROR_ENV}={mirror}"
    if isinstance(source, LocalSource):
        path = source.path
        if path.is_dir():
            return path, str(path)
        if not path.exists():
            raise UserError(f"data.source: {path} does not exist; give a folder of class "
                            "sub-folders or an archive (relative paths start at the working "
                            f"folder, {Path.cwd()})")
        archive = path
    else:
        archive = work / "download"
        _fetch(source, archive, known, timeout)
    extracted = work / "extracted"
    extracted.mkdir()
    extract(archive, extracted)
    if archive.parent == work:
        archive.unlink()  # free the disk space before the copy doubles it
    return extracted, str(source.path) if isinstance(source, LocalSource) else _shown(source)


# --- network ---------------------------------------------------------------------------


def _shown(source: Source) -> str:
    """The source as it may be printed: a URL loses any user:password part."""
    if isinstance(source, UrlSource):
        parts = urlsplit(source.url)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return source.key


def _fetch(source: Source, dest: Path, known: bool, timeout: float) -> None:
    """Download the archive of a Kaggle or URL source to ``dest``, with a progress bar."""
    creds = None
    if isinstance(source, KaggleSource):
        url = kaggle_url(source)
        creds = kaggle_credentials(os.environ, Path(".env"))
    else:
        url = source.key
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if creds:
        token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode("ascii")
        # Unredirected: Kaggle redirects to a signed storage URL that must not get the key.
        request.add_unredirected_header("Authorization", f"Basic {token}")
    hint = ("set IMGCLF_DATA_MIRROR to a local copy of the dataset or point data.source at a "
            "local folder" if known else
            "download the archive yourself and point data.source at the file or a local folder")
    try:
        fetch_url(request, dest, hint, timeout)
    except urllib.error.HTTPError as exc:
        raise _http_error(exc.code, exc.reason, source, host_of(url), creds is not None,
                          hint) from None


def _http_error(code: int, reason: str, source: Source, host: str, sent_creds: bool,
                hint: str) -> UserError:
    """The message for an HTTP error status: what went wrong and what to do."""
    kaggle = isinstance(source, KaggleSource)
    if kaggle and code in (401, 403):
        if sent_creds:
            what = ("Kaggle refused the credentials in KAGGLE_USERNAME and KAGGLE_KEY; check "
                    "them (environment or .env) and accept the dataset's rules on kaggle.com")
        else:
            what = ("Kaggle needs credentials: set KAGGLE_USERNAME and KAGGLE_KEY in the "
                    "environment or in a .env file in the working folder (the API key is "
                    "under Settings > API on kaggle.com)")
        return UserError(f"{what} (HTTP {code}); or {hint}")
    if code == 404:
        name = f"Kaggle dataset {source.key}" if kaggle else _shown(source)
        return UserError(f"{name} not found (HTTP 404 from {host}); check data.source")
    if code in (401, 403):
        return UserError(f"{host} refused access (HTTP {code} {reason}); {hint}")
    return UserError(f"{host} answered HTTP {code} {reason}; try again later, or {hint}")
