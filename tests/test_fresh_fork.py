"""A fresh fork's CI has no real photos, no Keras weights and no secrets: those tests skip.

GitHub's runner gets none of IMGCLF_DATA_MIRROR, KERAS_HOME, WANDB_API_KEY or KAGGLE_*
(.github/workflows/main.yml sets none), and docker compose passes blank ones. The suite
must then skip, with a reason, every test that needs them, and fail none.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NEEDS = ("IMGCLF_DATA_MIRROR", "KERAS_HOME", "WANDB_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY")


@pytest.mark.parametrize("missing", ["unset", "blank"])
def test_tests_needing_real_data_or_weights_skip_without_them(missing: str,
                                                               tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in NEEDS}
    if missing == "blank":
        environ.update(dict.fromkeys(NEEDS, ""))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "realdata or realweights", "-q", "-rs",
         "-p", "no:cacheprovider", str(REPO / "tests")],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)",
                                                           out))
    assert counts.get("skipped", 0) >= 4 and not counts.get("passed") and not counts.get(
        "failed") and not counts.get("error"), out
    assert "needs the real photos: set IMGCLF_DATA_MIRROR" in out
    assert "needs Keras' real MobileNetV2 weights: set KERAS_HOME" in out


def test_the_github_workflow_gives_no_data_weights_or_secrets() -> None:
    """The fork's CI runs exactly the README's test command, with nothing local."""
    workflow = yaml.safe_load((REPO / ".github/workflows/main.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    text = yaml.safe_dump(workflow)
    for name in NEEDS:
        assert name not in text, name
    assert any(step.get("run") == "make test" for step in steps)
