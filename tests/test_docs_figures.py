"""The figures of README.md and docs/ that come from metrics/ agree with metrics/.

Each is marked ``<!-- metric: FILE KEY SPEC -->value<!-- /metric -->``;
``scripts/docs_figures.py`` (``make docs``) rewrites them, ``--check`` reports them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "docs_figures.py"
# The pages and the figures each must mark (the headline scores every reader looks at).
MUST_MARK = {"README.md": {"test.accuracy", "test.f1"},
             "docs/pipeline.md": {"test.accuracy", "test.f1"},
             "docs/performance.md": {"test.accuracy", "test.f1"}}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


docs_figures = _script()


def test_every_marked_figure_agrees_with_metrics() -> None:
    assert docs_figures.stale(docs_figures.pages()) == [], "run `make docs`"


def test_the_headline_figures_are_marked() -> None:
    metrics = docs_figures.Metrics(REPO)
    for page, keys in MUST_MARK.items():
        marked = {f.key for f in docs_figures.figures(REPO / page, metrics)
                  if f.file == "metrics/eval.json"}
        assert keys <= marked, f"{page} does not mark {sorted(keys - marked)}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps(
        {"test": {"accuracy": 0.98, "n": 450, "f1": 0.979962}}))
    (tmp_path / "docs").mkdir()
    return tmp_path


def mark(key: str, spec: str, value: str) -> str:
    return f"<!-- metric: metrics/eval.json {key} {spec} -->{value}<!-- /metric -->"


def test_a_stale_figure_is_named_and_rewritten(project: Path) -> None:
    page = project / "docs" / "results.md"
    page.write_text(f"# Results\n\nTest accuracy {mark('test.accuracy', '.3f', '0.987')} "
                    f"({mark('test.accuracy*test.n', '.0f', '444')} of "
                    f"{mark('test.n', 'd', '450')}), F1 {mark('test.f1', '.3f', '0.980')}.\n")
    problems = docs_figures.stale([page], project)
    assert problems == [
        "docs/results.md:3: test.accuracy of metrics/eval.json is 0.980, the page says '0.987'",
        "docs/results.md:3: test.accuracy*test.n of metrics/eval.json is 441, the page says "
        "'444'"]
    assert docs_figures.rewrite(page, project) == 2
    assert docs_figures.stale([page], project) == []
    assert "Test accuracy" in page.read_text() and ">441<" in page.read_text()


@pytest.mark.parametrize(("key", "spec", "error"), [
    ("test.recall", ".3f", "has no key test.recall"),
    ("test", ".3f", "test is not a number"),
    ("test.accuracy", "d", "not a whole number")])
def test_a_bad_marker_names_the_page_and_line(project: Path, key: str, spec: str,
                                              error: str) -> None:
    page = project / "README.md"
    page.write_text(f"intro\n{mark(key, spec, '1')}\n")
    with pytest.raises(SystemExit, match=rf"^README.md:2: .*{error}.*fix the marker"):
        docs_figures.stale([page], project)


def test_check_exits_1_and_says_what_to_run(tmp_path: Path) -> None:
    """The script itself, on a copy of the repository's pages with one figure changed."""
    for name in ("README.md", "metrics/eval.json", "metrics/export.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "docs_figures.py").write_bytes(SCRIPT.read_bytes())
    (tmp_path / "docs").mkdir()
    readme = tmp_path / "README.md"
    text = readme.read_text()
    first = text.index("test.accuracy .3f -->") + len("test.accuracy .3f -->")
    readme.write_text(text[:first] + "0.123" + text[text.index("<!--", first):])
    run = [sys.executable, str(tmp_path / "scripts" / "docs_figures.py")]
    check = subprocess.run([*run, "--check"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "README.md:" in check.stderr and "'0.123'" in check.stderr
    assert "make docs" in check.stderr
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    assert readme.read_text() == text
    assert subprocess.run([*run, "--check"], capture_output=True).returncode == 0
