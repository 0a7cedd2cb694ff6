"""imgclf.env: empty variables count as unset, and .env files are read by python-dotenv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf import env
from imgclf.models.weights import pinned_for
from imgclf.params import load_params

REPO = Path(__file__).resolve().parents[1]


def test_dotenv_reads_quotes_comments_and_export(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("""
# credentials
KAGGLE_USERNAME=alice
export KAGGLE_KEY="s3cr#t"  # the key, quoted, with a note after it
SINGLE='quoted value'
INLINE=plain # a comment
EMPTY=
BLANK="  "
not an assignment
""", encoding="utf-8")
    assert env.dotenv(path) == {
        "KAGGLE_USERNAME": "alice", "KAGGLE_KEY": "s3cr#t", "SINGLE": "quoted value",
        "INLINE": "plain",
    }


def test_dotenv_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert env.dotenv(tmp_path / "nope.env") == {}


def test_blank_values_are_unset_and_the_file_fills_in(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("WANDB_API_KEY=from-file\nKAGGLE_KEY=file-key\n", encoding="utf-8")
    environ = {"WANDB_API_KEY": "  ", "KAGGLE_KEY": "env-key"}
    assert env.get("WANDB_API_KEY", environ) is None
    assert env.lookup("WANDB_API_KEY", environ, path) == "from-file"
    assert env.lookup("KAGGLE_KEY", environ, path) == "env-key"  # the environment wins
    assert env.lookup("IMGCLF_NOPE", environ, path) is None


def test_drop_empty_removes_only_our_blank_variables() -> None:
    environ = {"WANDB_MODE": "", "KERAS_HOME": " ", "IMGCLF_DATA_MIRROR": "",
               "KAGGLE_KEY": "", "WANDB_PROJECT": "p", "HOME": "", "OTHER_X": ""}
    assert env.drop_empty(environ) == ["IMGCLF_DATA_MIRROR", "KAGGLE_KEY", "KERAS_HOME",
                                       "WANDB_MODE"]
    assert environ == {"WANDB_PROJECT": "p", "HOME": "", "OTHER_X": ""}


def test_cli_with_empty_wandb_mode_and_keras_home_runs(tmp_path: Path) -> None:
    """As `docker compose` passes keys of .env without a value: the CLI must not choke."""
    environ = {**os.environ, "WANDB_MODE": "", "KERAS_HOME": "", "IMGCLF_HTTP_TIMEOUT": ""}
    code = ("import os, sys; from imgclf import cli; "
            "sys.argv = ['imgclf', '--version']; "
            "import contextlib\n"
            "with contextlib.suppress(SystemExit): cli.main(['--version'])\n"
            "print(sorted(k for k in ('WANDB_MODE', 'KERAS_HOME', 'IMGCLF_HTTP_TIMEOUT') "
            "if k in os.environ))")
    proc = subprocess.run([sys.executable, "-c", code], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_dotenv_fills_in_our_variables_but_not_the_secrets(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("IMGCLF_DATA_MIRROR=/data/animals\nKERAS_HOME=/data/keras\n"
                    "WANDB_MODE=offline\nIMGCLF_HTTP_TIMEOUT=5\nWANDB_API_KEY=k\n"
                    "KAGGLE_KEY=k\nOTHER=x\n", encoding="utf-8")
    environ = {"IMGCLF_HTTP_TIMEOUT": "9", "KERAS_HOME": " "}
    assert env.load_dotenv(environ, path) == ["IMGCLF_DATA_MIRROR", "KERAS_HOME",
                                              "WANDB_MODE"]
    assert environ == {"IMGCLF_HTTP_TIMEOUT": "9",  # the environment wins
                       "IMGCLF_DATA_MIRROR": "/data/animals", "KERAS_HOME": "/data/keras",
                       "WANDB_MODE": "offline"}


def imgclf_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``imgclf ARGS`` run in ``project`` with none of our variables inherited."""
    environ = {k: v for k, v in os.environ.items() if not env.ours(k) and k != "DVC_ROOT"}
    return subprocess.run([sys.executable, "-m", "imgclf", *args], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(REPO / "params.yaml", project / "params.yaml")
    return project


def test_the_project_dotenv_names_the_mirror(project: Path) -> None:
    mirror = project / "no-such-mirror"
    (project / ".env").write_text(f"IMGCLF_DATA_MIRROR={mirror}\n", encoding="utf-8")
    proc = imgclf_in(project, "download")
    assert proc.returncode == 2, proc.stderr
    assert f"IMGCLF_DATA_MIRROR={mirror}: not a folder" in proc.stderr


def test_the_project_dotenv_names_keras_home(project: Path) -> None:
    pinned = pinned_for(load_params(project / "params.yaml").model)
    assert pinned is not None  # the default model starts from pretrained weights
    cached = project / "keras" / "models" / pinned.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the weights")  # found there, then refused by its hash
    (project / ".env").write_text(f"KERAS_HOME='{project / 'keras'}'\n", encoding="utf-8")
    proc = imgclf_in(project, "pretrained")
    assert proc.returncode == 2, proc.stderr
    assert f"{cached}: sha256" in proc.stderr


def test_a_dvc_stage_reads_the_dotenv_in_dvc_root(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IMGCLF_DATA_MIRROR=/root/one\n", encoding="utf-8")
    environ = {"DVC_ROOT": str(tmp_path)}
    env.load_dotenv(environ)
    assert environ["IMGCLF_DATA_MIRROR"] == "/root/one"


def test_tensorflow_logs_quieter_only_without_a_gpu(tmp_path: Path) -> None:
    assert env.gpu_absent({}, tmp_path)
    assert not env.gpu_absent({"CUDA_VISIBLE_DEVICES": "0"}, tmp_path)
    (tmp_path / "nvidia0").touch()
    assert not env.gpu_absent({}, tmp_path)


def test_tensorflow_log_level_is_chosen_once_and_an_explicit_one_wins(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    env.quiet_tensorflow(environ)
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == ("3" if env.gpu_absent() else "2")
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    env.quiet_tensorflow(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0"}
