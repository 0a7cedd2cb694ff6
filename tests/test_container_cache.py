"""Why the image sets its own ``cache.type``: the compose file's separate mounts.

``docker-compose.yml`` binds ``models/`` (and ``data/``, ``metrics/``) and
``.dvc/cache`` from the host as separate mounts. Linux refuses a hard link across two
mounts (EXDEV) even on one filesystem, so with the project's ``cache.type`` DVC falls back
to a symlink into the cache at its path inside the container, which dangles on the
host. Here a real ``dvc repro`` runs in a throw-away repo with the same two bind mounts
(root only, as ``mount --bind`` needs it), once with the project's ``.dvc/config`` and
once with the image's setting, read from the Dockerfile's ``dvc config --local`` line.
``make container-check`` proves the same with the image itself, where podman is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None,
    reason="bind mounts need root on Linux")

DVC_YAML = """stages:
  make:
    cmd: python -c "open('models/m.bin', 'wb').write(bytes(range(256)))"
    outs:
      - models/m.bin
"""


def image_cache_type() -> str:
    """The ``cache.type`` the Dockerfile sets in the image."""
    found = re.search(r"dvc config --local cache\.type (\S+)", (REPO / "Dockerfile").read_text())
    assert found, "the Dockerfile sets no cache.type for the image"
    return found[1]


@pytest.fixture
def mounted_repo(tmp_path: Path, git_environ: dict[str, str]) -> Iterator[Path]:
    """A git + DVC repo whose ``models/`` and ``.dvc/cache`` are bind mounts of folders
    elsewhere (as the compose file's), with the project's ``.dvc/config``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=git_environ, check=True, capture_output=True)
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    mounts = []
    for inside, host in (("models", "host_models"), (".dvc/cache", "host_cache")):
        (tmp_path / host).mkdir()
        (repo / inside).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "--bind", str(tmp_path / host), str(repo / inside)],
                              capture_output=True, text=True, check=False)
        if done.returncode:  # e.g. root in a container without CAP_SYS_ADMIN
            unmount(mounts)
            pytest.skip(f"mount --bind fails here: {done.stderr.strip()}")
        mounts.append(repo / inside)
    try:
        yield repo
    finally:
        unmount(mounts)


def unmount(mounts: list[Path]) -> None:
    for mount in reversed(mounts):
        subprocess.run(["umount", str(mount)], check=False)


def repro(repo: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-f"], cwd=repo, env=env,
                   check=True, capture_output=True)


def test_across_the_mounts_only_the_images_setting_gives_real_files(
        mounted_repo: Path, git_environ: dict[str, str]) -> None:
    out = mounted_repo / "models/m.bin"
    host_out = mounted_repo.parent / "host_models/m.bin"
    repro(mounted_repo, git_environ)
    # The project's setting: no hard link across the mounts, so a symlink into the cache.
    assert out.is_symlink() and host_out.is_symlink()
    assert str(mounted_repo / ".dvc/cache") in os.readlink(host_out)

    subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "cache.type",
                    image_cache_type()], cwd=mounted_repo, env=git_environ, check=True)
    out.unlink()
    repro(mounted_repo, git_environ)
    assert not host_out.is_symlink() and host_out.read_bytes() == bytes(range(256))
    assert host_out.stat().st_nlink == 1  # a copy, not a link that happened to work
    cached = [p for p in (mounted_repo.parent / "host_cache").rglob("*") if p.is_file()]
    assert any(p.read_bytes() == bytes(range(256)) for p in cached)
