"""The params reference has two sources, the models of imgclf.params (keys, defaults,
rules) and the texts of imgclf.params_help, and the pages generated from them,
params.yaml and the docs' links agree with them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, Field

from imgclf.params import LAYER_TYPES, Params, flat_keys, load_params, to_dict
from imgclf.params_help import DESCRIPTIONS

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "params_doc.py"
# Keys whose value in params.yaml deliberately differs from the model's default
# (none today: the file shows the project's defaults).
OVERRIDES: dict[str, Any] = {}
SECTION_NAMES = tuple(Params.model_fields)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("params_doc", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of ``model``: sections, their leaves, nested sections expanded."""
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        out.append(key)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out += _keys(field.annotation, f"{key}.")
    return out


def _leaves() -> list[str]:
    """The keys of params.yaml that hold values (what the tables list)."""
    return [key for key, _ in flat_keys(to_dict(Params()))]


def _layer_keys() -> list[str]:
    """``model.layers.conv``, ``model.layers.conv.filters``, ...: each layer type and its keys."""
    return [f"model.layers.{kind}{f'.{name}' if name != 'type' else ''}"
            for kind, model in LAYER_TYPES.items() for name in model.model_fields]


def test_every_key_and_layer_type_is_described() -> None:
    keys = _keys(Params) + _layer_keys()
    assert "train.augment.crop" in keys and "model.layers.dropout.rate" in keys
    assert [key for key in keys if len(DESCRIPTIONS.get(key, "")) < 10] == []


def test_every_description_is_of_a_key_that_exists() -> None:
    keys = set(_keys(Params) + _layer_keys())
    assert sorted(set(DESCRIPTIONS) - keys) == []
    # and each key a text names in full (`train.loss`) is a real one
    named = {m for text in DESCRIPTIONS.values() for m in re.findall(r"`([a-z_.]+)`", text)
             if m.split(".")[0] in SECTION_NAMES and "." in m}
    assert named and sorted(named - keys) == []


def test_no_description_holds_a_measurement() -> None:
    # Figures measured on a dataset go stale here; docs/performance.md keeps them.
    figures = [key for key, text in DESCRIPTIONS.items()
               if re.search(r"\d+(\.\d+)? ?(KB|MB|x\b|%|points)|\d+ of \d+", text)]
    assert figures == []


def test_docs_params_md_is_what_the_generator_makes() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_table_lists_every_key_with_its_doc_and_default() -> None:
    text = (REPO / "docs" / "params.md").read_text()
    markdown = _script()._markdown
    for key in _leaves():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")),
                   None)
        assert row is not None, key
        assert markdown(DESCRIPTIONS[key]) in row, key
    for key in _layer_keys():
        kind, _, name = key.removeprefix("model.layers.").partition(".")
        start = f"| `{kind}.{name}` |" if name else f"| `{{type: {kind}}}` |"
        row = next((line for line in text.splitlines() if line.startswith(start)), None)
        assert row is not None and markdown(DESCRIPTIONS[key]) in row, key
    assert "| `train.fine_tune.learning_rate` | `0.00002` |" in text  # not 2e-05
    assert "| `evaluate.splits` | `[val, test]` |" in text
    assert "| `wandb.entity` | `\"\"` |" in text
    assert "| `conv.filters` | required |" in text


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
    class Tiny(BaseModel):
        size: int = 3

    class Root(BaseModel):
        tiny: Tiny = Field(default_factory=Tiny)

    texts = {"tiny": "A section.", "tiny.size": "how big"}
    assert _script().tables(Root(), texts) == (
        "### tiny\n\nA section.\n\n| key | default | meaning |\n|---|---|---|\n"
        "| `tiny.size` | `3` | how big |")
    texts["tiny.size"] = "how large"
    assert _script().tables(Root(), texts).endswith("| `tiny.size` | `3` | how large |")


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
