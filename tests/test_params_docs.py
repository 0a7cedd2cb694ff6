"""The params reference has one source (the field docs of imgclf.params), and the
pages generated from it, params.yaml and the docs' links agree with it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from imgclf.params import Params, field_doc, flat_keys, load_params, to_dict

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "params_doc.py"
# Keys whose value in params.yaml deliberately differs from the dataclass default
# (none today: the file shows the project's defaults).
OVERRIDES: dict[str, Any] = {}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("params_doc", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaves(section: Any, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any]]]:
    out = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out += _leaves(value, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f))
    return out


def test_every_param_is_documented() -> None:
    undocumented = [key for key, f in _leaves(Params()) if len(field_doc(f)) < 10]
    assert undocumented == []
    for f in dataclasses.fields(Params):  # each section says what it is for
        assert (type(getattr(Params(), f.name)).__doc__ or "").strip(), f.name


def test_docs_params_md_is_what_the_generator_makes() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_table_lists_every_key_with_its_doc_and_default() -> None:
    text = (REPO / "docs" / "params.md").read_text()
    for key, f in _leaves(Params()):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")),
                   None)
        assert row is not None, key
        assert field_doc(f) in row, key
    assert "| `train.fine_tune.learning_rate` | `0.00002` |" in text  # not 2e-05
    assert "| `evaluate.splits` | `[val, test]` |" in text
    assert "| `wandb.entity` | `\"\"` |" in text


def test_check_fails_on_a_stale_page_and_make_docs_fixes_it(tmp_path: Path) -> None:
    page = tmp_path / "params.md"
    good = (REPO / "docs" / "params.md").read_text()
    page.write_text(good.replace("| `split.seed` | `42` |", "| `split.seed` | `7` |"))
    args = [sys.executable, str(SCRIPT), "--file", str(page)]
    proc = subprocess.run([*args, "--check"], capture_output=True, text=True)
    assert proc.returncode == 1 and "make docs" in proc.stderr
    assert subprocess.run(args).returncode == 0
    assert page.read_text() == good


def test_the_generator_follows_a_changed_doc() -> None:
    @dataclasses.dataclass(frozen=True)
    class Tiny:
        """A section."""

        size: int = dataclasses.field(default=3, metadata={"doc": "how big"})

    @dataclasses.dataclass(frozen=True)
    class Root:
        tiny: Tiny = dataclasses.field(default_factory=Tiny)

    assert _script().tables(Root()) == (  # type: ignore[arg-type]
        "### tiny\n\nA section.\n\n| key | default | meaning |\n|---|---|---|\n"
        "| `tiny.size` | `3` | how big |")


def test_params_yaml_has_every_key_with_the_default_value() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    load_params(REPO / "params.yaml")  # every key exists and is valid
    in_file = dict(flat_keys(raw))
    defaults = dict(flat_keys(to_dict(Params())))
    assert sorted(in_file) == sorted(defaults), "params.yaml should show every key"
    differ = {k: v for k, v in in_file.items() if v != defaults[k]}
    assert differ == OVERRIDES


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_links_of_the_readme_and_docs_lead_somewhere() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_pages_named_by_the_help_and_params_yaml_exist() -> None:
    from imgclf.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help(), (REPO / "params.yaml").read_text()]
    sub = next(a for a in parser._actions if a.choices and "train" in a.choices)
    texts += [p.format_help() for p in sub.choices.values()]  # type: ignore[union-attr]
    named = set(re.findall(r"docs/[\w-]+\.md", "\n".join(texts)))
    assert {"docs/params.md", "docs/serve.md", "docs/export.md"} <= named
    assert [page for page in sorted(named) if not (REPO / page).exists()] == []


def test_the_option_tables_of_predict_and_serve_match_their_help() -> None:
    from imgclf.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.choices and "predict" in a.choices)
    for command, page in (("predict", "predict.md"), ("serve", "serve.md")):
        parser = sub.choices[command]  # type: ignore[index]
        options = {o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help"}
        text = (REPO / "docs" / page).read_text()
        rows = [line for line in text.splitlines() if line.startswith("| `--")]
        in_table = set(re.findall(r"`(--[a-z-]+)`", "\n".join(rows)))
        assert in_table == options, command
