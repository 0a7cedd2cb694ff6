import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imgclf.params import ParamsError, load_params, merge, params_from_dict
from imgclf.recipe import set_param_flags

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / "recipes" / "from-scratch.yaml"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_name_every_key_of_the_recipe_in_order(tmp_path: Path) -> None:
    recipe = _write(tmp_path / "r.yaml", "model:\n  arch: compact\ntrain:\n  ema: 0.99\n"
                    "  augment:\n    crop: 0.25\n    flip: false\ndata:\n  image_size: 96\n")
    flags = set_param_flags(recipe, REPO / "params.yaml")
    assert flags == ["-S", "model.arch=compact", "-S", "train.ema=0.99",
                     "-S", "train.augment.crop=0.25", "-S", "train.augment.flip=false",
                     "-S", "data.image_size=96"]


def test_the_shipped_from_scratch_recipe_is_valid_and_trains_from_scratch() -> None:
    overlay = yaml.safe_load(SCRATCH.read_text(encoding="utf-8"))
    base = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params = params_from_dict(merge(base, overlay))
    assert params.model.arch == "compact"
    assert params.train.augment.crop > 0 and params.train.early_stopping_patience == 0
    assert params.data.image_size == overlay["data"]["image_size"]
    # Each flag puts back exactly the recipe's value.
    flags = set_param_flags(SCRATCH, REPO / "params.yaml")
    assert len(flags) == 2 * sum(1 for _ in _leaves(overlay))
    for assignment in flags[1::2]:
        key, value = assignment.split("=", 1)
        node = overlay
        for part in key.split("."):
            node = node[part]
        assert yaml.safe_load(value) == node, key


def _leaves(d: dict) -> list:
    return [x for v in d.values() for x in (_leaves(v) if isinstance(v, dict) else [v])]


@pytest.mark.parametrize(("text", "words"), [
    ("train:\n  ema: 0.5\n", ["train.ema", "0.9"]),
    ("train:\n  optimiser: sgd\n", ["train.optimiser", "unknown key"]),
    ("model:\n  arch: compact\ndata:\n  image_size: 16\n", ["data.image_size", "32"]),
    ("train:\n  optimizer: 'two words'\n", ["train.optimizer"]),
    ("", ["expected a mapping"]),
    ("- a\n- b\n", ["expected a mapping"]),
    ("train: [unclosed\n", ["not valid YAML"]),
])
def test_a_bad_recipe_names_the_file_and_key(tmp_path: Path, text: str,
                                             words: list[str]) -> None:
    recipe = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ParamsError) as info:
        set_param_flags(recipe, REPO / "params.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert "bad.yaml" in message
    for word in words:
        assert word in message, message


def test_a_string_value_with_a_space_is_refused_with_advice() -> None:
    from imgclf.recipe import hydra_value

    with pytest.raises(ParamsError, match="by hand"):
        hydra_value("wandb.project", "my project")
    assert hydra_value("data.source", "kaggle:a/b") == "kaggle:a/b"
    assert hydra_value("train.deterministic", True) == "true"


def test_cli_prints_the_flags_and_fails_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "imgclf", "recipe", "--params", str(REPO / "params.yaml")]
    ok = subprocess.run([*cmd, str(SCRATCH)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("-S ") and "model.arch=compact" in ok.stdout.split()
    bad = subprocess.run([*cmd, str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "missing.yaml" in bad.stderr


def test_the_recipe_writes_nothing(tmp_path: Path) -> None:
    # It only prints flags: dvc exp run applies them to a copy. Neither the params file
    # nor the recipe is touched, and the params stay the pretrained default's.
    params = _write(tmp_path / "params.yaml", (REPO / "params.yaml").read_text())
    recipe = _write(tmp_path / "r.yaml", SCRATCH.read_text())
    before = {p: p.read_bytes() for p in (params, recipe)}
    set_param_flags(recipe, params)
    assert {p: p.read_bytes() for p in (params, recipe)} == before
    assert sorted(q.name for q in tmp_path.iterdir()) == ["params.yaml", "r.yaml"]
    assert load_params(params).model.arch == "mobilenet_v2"
