"""Shared fixtures: small generated image sets, and a tiny prepared + trained pipeline.

Images are made here, never copied from the real dataset. Each class gets its own
colour so a small CNN can learn them in a couple of epochs; noise keeps every file
distinct (the split stage groups duplicates).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# W&B stays offline in tests and writes its run files, caches and staged artifacts
# into one throw-away folder instead of the user's home.
_wandb_tmp = tempfile.mkdtemp(prefix="imgclf-wandb-")
os.environ.setdefault("WANDB_MODE", "offline")
for _name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
    os.environ.setdefault(_name, _wandb_tmp)

REPO = Path(__file__).resolve().parents[1]


def _real_photos() -> Path | None:
    """The real animals photos named by $IMGCLF_DATA_MIRROR; None if unset, blank or absent."""
    value = os.environ.get("IMGCLF_DATA_MIRROR", "").strip()
    path = Path(value) if value else None
    return path if path and all((path / c).is_dir() for c in ("cats", "dogs", "snakes")) else None


def _real_weights() -> Path | None:
    """$KERAS_HOME/models when it holds Keras' real MobileNetV2 weights, else None."""
    value = os.environ.get("KERAS_HOME", "").strip()
    models = Path(value) / "models" if value else None
    return models if models and any(models.glob("mobilenet_v2_*_no_top.h5")) else None


# Read once, before any test changes the environment.
REAL_PHOTOS, REAL_WEIGHTS = _real_photos(), _real_weights()
SKIPS = {
    "realdata": (REAL_PHOTOS, "needs the real photos: set IMGCLF_DATA_MIRROR to a folder "
                 "with cats/, dogs/ and snakes/ (.ci/run uses ../shared/data/animals)"),
    "realweights": (REAL_WEIGHTS, "needs Keras' real MobileNetV2 weights: set KERAS_HOME to "
                    "a folder whose models/ holds them (.ci/run uses ../shared/weights/keras)"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse", action="store_true",
                     help="run the tests in reverse order: with -p no:randomly, a test that "
                          "needs another to run first fails")


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, when that is active
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked realdata / realweights skip, with the reason, when those are missing;
    ``--reverse`` turns the order round."""
    for item in items:
        for marker, (found, reason) in SKIPS.items():
            if item.get_closest_marker(marker) and found is None:
                item.add_marker(pytest.mark.skip(reason=reason))
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture(scope="session")
def real_photos() -> Path:
    """The folder of the real photos (the test is marked realdata, so it exists)."""
    assert REAL_PHOTOS is not None, "mark the test realdata"
    return REAL_PHOTOS


@pytest.fixture(scope="session")
def real_weights() -> Path:
    """$KERAS_HOME/models with the real weights (the test is marked realweights)."""
    assert REAL_WEIGHTS is not None, "mark the test realweights"
    return REAL_WEIGHTS


CLASS_COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


def write_image_folder(root: Path, classes: list[str], per_class: int, size: int = 24,
                       seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: noisy images whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        base = np.array(CLASS_COLOURS[c % len(CLASS_COLOURS)], dtype=np.int16)
        for i in range(per_class):
            noise = rng.integers(-40, 40, size=(size, size, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:03d}.png")
    return root


# What a pipeline repo needs of this one: the pipeline, its ignores, the pins stages
# depend on, and the code.
PIPELINE_FILES = ("dvc.yaml", ".gitignore", ".dvcignore", "requirements.lock",
                  "requirements-dev.lock", "overrides.yaml")


def git_env() -> dict[str, str]:
    """The environment for git and dvc in a throw-away repo: the venv first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
            "DVC_NO_ANALYTICS": "1"}


def make_pipeline_repo(repo: Path, images: Path, params: dict) -> Path:
    """A committed git + DVC repo at ``repo`` with this project's pipeline and code, its
    params.yaml the repo's own with ``params`` laid over it, pointed at ``images``."""
    from imgclf.params import merge

    repo.mkdir(parents=True)
    for name in PIPELINE_FILES:
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    merged = merge(yaml.safe_load((REPO / "params.yaml").read_text()), params)
    merged["data"]["source"] = str(images)
    (repo / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    for cmd in (["git", "init", "-q", "-b", "main"], [sys.executable, "-m", "dvc", "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline"]):
        subprocess.run(cmd, cwd=repo, env=git_env(), check=True, capture_output=True)
    return repo


def copy_repo(template: Path, dest: Path) -> Path:
    """A self-contained copy at ``dest`` of the repo ``template`` (made by
    ``make_pipeline_repo``), to change freely: git, DVC's cache and the workspace.

    File times are kept, so DVC and the ``source`` stage see the same files. DVC's
    scratch folder .dvc/tmp (locks, the hash cache, the experiment queue) is left out:
    DVC makes it anew. The template must use ``cache.type copy`` (not links into its
    cache): a link in the copy would still point into the template.
    """
    def scratch(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder).name == ".dvc" else []

    shutil.copytree(template, dest, symlinks=True, ignore=scratch)
    for path in dest.rglob("*"):
        if path.is_symlink():
            assert path.resolve().is_relative_to(dest.resolve()), f"{path} links outside"
    return dest


@pytest.fixture(scope="session")
def git_environ() -> dict[str, str]:
    """``git_env()``: for git and dvc commands in a throw-away repo."""
    return git_env()


@pytest.fixture(scope="session")
def pipeline_repo() -> Callable[[Path, Path, dict], Path]:
    """The ``make_pipeline_repo`` builder."""
    return make_pipeline_repo


@pytest.fixture(scope="session")
def repo_copier() -> Callable[[Path, Path], Path]:
    """The ``copy_repo`` helper: a copy of a template repo for each test to change."""
    return copy_repo


@pytest.fixture(scope="session")
def image_folder() -> Callable[..., Path]:
    """The ``write_image_folder`` builder, for tests that need their own set."""
    return write_image_folder


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A split-stage output of 3 generated classes, 30 images each, at 16 px."""
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    root = tmp_path_factory.mktemp("tiny")
    write_image_folder(root / "raw", ["red", "green", "blue"], per_class=30)
    split.run(DataParams(image_size=16), SplitParams(train=0.6, val=0.2, test=0.2, seed=1),
              root / "raw", root / "prepared")
    return root / "prepared"


@pytest.fixture(scope="session")
def tiny_model(tiny_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained for a few epochs on ``tiny_prepared``."""
    from imgclf.params import ModelParams, TrainParams
    from imgclf.training import train

    out = tmp_path_factory.mktemp("tiny_model")
    train.run(ModelParams(arch="small"), TrainParams(epochs=4, batch_size=8, learning_rate=0.003),
              tiny_prepared, out / "model.keras", out / "live")
    return out / "model.keras"
