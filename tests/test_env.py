"""imgclf.env: empty variables count as unset, and .env files are read by python-dotenv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imgclf import env


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
