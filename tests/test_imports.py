"""Two promises the project's import graph keeps, checked statically (nothing is imported).

1. The rerun guarantee: every stage's ``deps`` cover all the project code its command runs.

For each stage of ``dvc.yaml`` the test finds the CLI function its command runs
(``imgclf split ...`` -> ``cli._split``), then follows the project imports statically:
the names that function uses, the imports inside it, and every import of each module
reached (at module level and inside functions alike, since a function-level import runs
too). Each module reached must lie under one of the stage's ``deps``, or be one of the
few in ``CANNOT_CHANGE_OUTPUTS``, each with the reason it cannot change a byte of any
stage's outputs. It also checks the other way: each ``src/`` dep holds code the stage
runs, so no stage reruns for code it never imports.

2. The layering: imports only go down ``LAYERS`` (tracking logs what it is handed, models
never reach into dataset code), so no folder depends on one above it and there are no
cycles between folders; and only the CLI starts the W&B tracker.
"""

from __future__ import annotations

import ast
import inspect
import shlex
import textwrap
from collections.abc import Collection
from pathlib import Path

import pytest
import yaml

from imgclf import cli

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Modules a stage may run without declaring them: none can change a byte of its outputs.
CANNOT_CHANGE_OUTPUTS = {
    "imgclf": "the package's __init__: the version string (--version) and the lazy load()",
    "imgclf.cli": "the CLI wiring: argument parsing, help texts, the one-line error print",
    "imgclf.errors": "the error type: a failing stage writes no outputs",
    "imgclf.pr_report": "the PR report command; no stage runs it",
    "imgclf.tracking.wandb_run": "the W&B side channel: it logs what a stage hands it",
    "imgclf.params_help": "what each param means, for docs/params.md and --help; no stage "
                          "imports it (tests/test_params_deps.py), so rewording reruns nothing",
}
# Lowest first. A module may import its own folder and the layers below its own.
LAYERS = (
    ("imgclf", "imgclf.errors", "imgclf.env", "imgclf.fsutil", "imgclf.progress", "imgclf.fetch",
     "imgclf.params", "imgclf.params_help"),
    # Peers, each on the base alone: a model never reaches into dataset code, and the
    # W&B tracker logs what it is handed (only the CLI uses it, see below).
    ("imgclf.data", "imgclf.models", "imgclf.tracking"),
    ("imgclf.training", "imgclf.inference"),
    ("imgclf.evaluation", "imgclf.export", "imgclf.serving", "imgclf.api", "imgclf.audit"),
    ("imgclf.pr_report", "imgclf.recipe", "imgclf.summary"),
    # imgclf tune: runs the pipeline as DVC experiments (subprocesses), writes params
    # as the recipe command does.
    ("imgclf.tuning",),
    ("imgclf.cli",),
    ("imgclf.__main__",),
)
# The lock of the libraries that compute outputs (TensorFlow, Keras, Pillow, NumPy,
# scikit-learn): a stage that computes with them depends on it; the dev lock is no dep.
RUNTIME_LOCK = "requirements.lock"
# Imports made inside a function of a lower module, on purpose: the package's load() is
# the Python API's entry, and imports imgclf.api only when called, so `import imgclf`
# stays light (tests/test_api.py checks that it loads no TensorFlow).
LAZY_UPWARD = {("imgclf", "imgclf.api")}
COMPUTING_STAGES = {"split", "features", "audit", "train", "evaluate", "export", "ood"}


def module_file(name: str) -> Path | None:
    """The source file of project module ``name`` (a package's ``__init__.py``), or None."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def resolve(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    """The project modules an import statement loads, parent packages included."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from . import x, from .y import z
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        # "from pkg import name" loads pkg, and pkg.name when that is a module.
        names = [base, *(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}"))]
    for name in names:
        if name.split(".")[0] != "imgclf":
            continue
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                     if module_file(".".join(parts[:i])))
    return found


def imports_of(tree: ast.AST, package: str) -> set[str]:
    """Every project module imported anywhere in ``tree`` (functions included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= resolve(node, package)
    return found


def cli_function_imports(func: object) -> set[str]:
    """The project modules a CLI function loads: its own imports and the module-level
    imports of ``cli`` whose names it uses."""
    cli_tree = ast.parse(Path(inspect.getfile(cli)).read_text(encoding="utf-8"))
    by_name: dict[str, set[str]] = {}
    for node in cli_tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                by_name.setdefault(bound, set()).update(resolve(node, "imgclf"))
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    found = imports_of(tree, "imgclf")
    for name in used & by_name.keys():
        found |= by_name[name]
    return found


def closure(start: set[str], stop: Collection[str] = CANNOT_CHANGE_OUTPUTS.keys()) -> set[str]:
    """``start`` and every project module reachable from it by imports, not through ``stop``."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in stop:
            continue  # what it imports runs for it alone, so it cannot change outputs either
        path = module_file(name)
        assert path is not None, name
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += imports_of(ast.parse(path.read_text(encoding="utf-8")), package) - seen
    return seen


def stage_function(cmd: str) -> object:
    """The CLI function an ``imgclf`` stage command runs."""
    argv = shlex.split(cmd)
    assert argv[0] == "imgclf", f"stage command {cmd!r} does not run imgclf"
    return cli.build_parser().parse_args(argv[1:]).func


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def trivial(name: str) -> bool:
    """A package ``__init__`` with nothing but a docstring: importing it computes nothing."""
    path = module_file(name)
    assert path is not None, name
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return path.name == "__init__.py" and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def stage_closure(stage: dict) -> set[str]:
    return closure(cli_function_imports(stage_function(stage["cmd"])))


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_module_a_stage_runs_is_a_dep(name: str) -> None:
    stage = stages()[name]
    deps = [str(d) for d in stage.get("deps", [])]
    missing = sorted(m for m in stage_closure(stage) - CANNOT_CHANGE_OUTPUTS.keys()
                     if not trivial(m) and not covered(module_file(m), deps))  # type: ignore[arg-type]
    assert not missing, (f"stage {name} runs {', '.join(missing)} but dvc.yaml does not list "
                         "them in its deps")


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_code_dep_is_code_the_stage_runs(name: str) -> None:
    stage = stages()[name]
    files = [module_file(m) for m in stage_closure(stage)]
    for dep in stage.get("deps", []):
        dep = str(dep)
        if not dep.startswith("src/") or dep.endswith(".sha256"):
            continue
        assert any(covered(f, [dep]) for f in files if f), (
            f"stage {name} lists {dep} in its deps but never imports it: a change there "
            "would rerun it for nothing")


@pytest.mark.parametrize("name", sorted(stages()))
def test_the_runtime_lock_is_a_dep_of_the_stages_that_compute(name: str) -> None:
    deps = [str(d) for d in stages()[name].get("deps", [])]
    assert (RUNTIME_LOCK in deps) == (name in COMPUTING_STAGES), (
        f"stage {name}: {RUNTIME_LOCK} must be a dep exactly of {sorted(COMPUTING_STAGES)}")
    assert not any("dev" in d and d.endswith(".lock") for d in deps), name


def test_the_closure_follows_function_level_imports() -> None:
    """The test's own machinery: evaluate imports the flip averaging inside the package."""
    found = stage_closure(stages()["evaluate"])
    assert "imgclf.inference.batch" in found
    assert "imgclf.models.saving" in found  # imported inside runtimes.load_runtime
    # evaluate --data FOLDER reads files as predict does; the stage runs neither.
    assert "imgclf.inference.predict" in closure({"imgclf.evaluation.folder"}, ())
    assert not found & {"imgclf.inference.predict", "imgclf.evaluation.folder"}
    # The stages hand their results to the tracker, which imports no stage code.
    assert "imgclf.tracking.wandb_run" not in closure({"imgclf.evaluation.evaluate"}, ())
    assert "imgclf.tracking.wandb_run" not in closure({"imgclf.training.train"}, ())
    tracker = closure({"imgclf.tracking.wandb_run"}, ())
    assert "imgclf.env" in tracker  # the walk does go into the tracker here ...
    assert not any(m.startswith(("imgclf.evaluation", "imgclf.training")) for m in tracker)


def test_every_exemption_is_a_real_module() -> None:
    for name in CANNOT_CHANGE_OUTPUTS:
        assert module_file(name), name


def all_modules() -> list[str]:
    return sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                  for p in (SRC / "imgclf").rglob("*.py"))


def layer_of(name: str) -> tuple[int, str]:
    """(layer index, the folder or module that places it) of a project module."""
    best = (-1, "")
    for index, members in enumerate(LAYERS):
        for member in members:
            if (name == member or name.startswith(member + ".")) and len(member) > len(best[1]):
                best = (index, member)
    assert best[0] >= 0, f"{name} is in no layer: add it to LAYERS in {__file__}"
    return best


def violations(name: str, tree: ast.AST, package: str) -> list[str]:
    """The imports of module ``name`` (its source parsed as ``tree``) that go up a layer."""
    level, home = layer_of(name)
    bad = []
    for target in sorted(imports_of(tree, package)):
        t_level, t_home = layer_of(target)
        if (t_home == home or target == "imgclf" or (level == 0 and t_level == 0)
                or (name, target) in LAZY_UPWARD):
            continue  # its own folder, the package root, or the base modules among themselves
        if t_level >= level:
            bad.append(f"{name} (layer {home}) imports {target} (layer {t_home})")
    return bad


@pytest.mark.parametrize("name", all_modules())
def test_imports_only_go_down_the_layers(name: str) -> None:
    path = module_file(name)
    assert path is not None
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    bad = violations(name, ast.parse(path.read_text(encoding="utf-8")), package)
    assert not bad, "imports must only go down the layers: " + "; ".join(bad)


def test_only_the_cli_uses_the_tracker() -> None:
    users = set()
    for name in all_modules():
        if not name.startswith("imgclf.tracking"):
            path = module_file(name)
            assert path is not None
            found = imports_of(ast.parse(path.read_text(encoding="utf-8")), "imgclf")
            if any(m.startswith("imgclf.tracking") for m in found):
                users.add(name)
    assert users == {"imgclf.cli"}


@pytest.mark.parametrize(("name", "source"), [
    # The cycles this layering removed: the tracker computing its own curves, models
    # fetching through the download stage; and data code reaching up into training.
    ("imgclf.tracking.wandb_run", "from imgclf.evaluation.curves import roc_points"),
    ("imgclf.models.pretrained", "from imgclf.data.download import fetch_url"),
    ("imgclf.data.shards", "def f():\n    from imgclf.training import dataset"),
])
def test_an_import_up_the_layers_is_caught(name: str, source: str) -> None:
    assert violations(name, ast.parse(source), name.rpartition(".")[0])
