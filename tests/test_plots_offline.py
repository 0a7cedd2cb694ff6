"""`dvc plots show` draws its charts without a network: Vega is inlined, not fetched."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "plots_template.py"
SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)


def plots_page(repo: Path, environ: dict[str, str]) -> str:
    out = repo / "dvc_plots"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], cwd=repo,
                   env=environ, check=True, capture_output=True, text=True, timeout=300)
    return (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_plots_show_references_no_script_by_url(
        tmp_path: Path, image_folder: Callable[..., Path],
        pipeline_repo: Callable[[Path, Path, dict], Path], git_environ: dict[str, str]) -> None:
    repo = pipeline_repo(tmp_path / "repo", image_folder(tmp_path / "images", ["a", "b"], 1), {})
    shutil.copytree(REPO / "metrics" / "train", repo / "metrics" / "train")
    shutil.copytree(REPO / "metrics" / "plots", repo / "metrics" / "plots")

    default = plots_page(repo, git_environ)  # DVC's own page, as a fresh `dvc init` has it
    assert any("src=\"http" in tag for tag in SCRIPT_TAG.findall(default))

    for name in ("config", "plots-offline.html"):
        shutil.copyfile(REPO / ".dvc" / name, repo / ".dvc" / name)
    page = plots_page(repo, git_environ)
    tags = SCRIPT_TAG.findall(page)
    assert not [tag for tag in tags if "src=" in tag], tags
    assert page.count("vegaEmbed('#") >= 4  # the charts of dvc.yaml are there to draw
    assert "window.vegaEmbed=" in page  # ... by the inlined library


@pytest.mark.slow
def test_the_template_is_what_the_pinned_bundle_gives() -> None:
    spec = importlib.util.spec_from_file_location("plots_template", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run scripts/plots_template.py"
