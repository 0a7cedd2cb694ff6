"""`imgclf tune`'s search space checks and --apply's params writing (no TensorFlow).

The real study, its trials as DVC experiments in a copy of the reproduced template
repo, is tests/test_pipeline.py::test_tune_runs_a_study_of_experiments_that_resumes_and_applies.
"""

from __future__ import annotations

import math
import shutil
from io import StringIO
from pathlib import Path

import pytest
import yaml

from imgclf.params import ParamsError, load_params, merge, read_yaml
from imgclf.tuning.report import write_params
from imgclf.tuning.space import load_space
from imgclf.tuning.trial import dvc_float

REPO = Path(__file__).resolve().parents[2]


def _space_error(tmp_path: Path, text: str, weights: tuple[Path, ...] = ()) -> str:
    (tmp_path / "space.yaml").write_text(text)
    with pytest.raises(ParamsError) as err:
        load_space(tmp_path / "space.yaml", REPO / "params.yaml", weights)
    return str(err.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("search:\n  train.lerning_rate: {low: 0.001, high: 0.01}\n",
     "search: train.lerning_rate: unknown key; valid keys in train are"),
    ("search:\n  model.dropout: {low: 0.0, high: 1.5}\n",
     "search: model.dropout: must be in [0, 1)"),
    ("search:\n  train.epochs: 3\n", "search.train.epochs: expected a list of choices or"),
    ("search:\n  train.learning_rate: {low: 0, high: 0.1, log: true}\n",
     "search.train.learning_rate.log: true needs low above 0"),
    ("search:\n  train.class_weight: [none, balnced]\n",
     "search: train.class_weight: 'balnced' is not valid"),
    ("fixed:\n  train.label_smoothing: 0.1\nsearch:\n  train.epochs: {low: 1, high: 3}\n",
     "fixed: train.label_smoothing: needs train.loss: categorical_crossentropy"),
    ("search:\n  backbone: [mobilenet_v2@0.35]\n",
     "search.backbone: the weights of none of mobilenet_v2@0.35 are present"),
    ("serach:\n  train.epochs: {low: 1, high: 3}\n", "search: expected a mapping"),
])
def test_space_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = _space_error(tmp_path, text)
    assert message.startswith(str(tmp_path / "space.yaml")), message
    assert expected in message, message


def test_default_space_is_valid_and_drops_absent_backbones(tmp_path: Path) -> None:
    weights = tmp_path / "models"
    weights.mkdir()
    (weights / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").touch()
    space = load_space(REPO / "recipes" / "tune.yaml", REPO / "params.yaml", (weights,))
    backbone = next(d for d in space.dims if d.key == "backbone")
    assert backbone.choices == ("mobilenet_v2@0.35",)
    assert "mobilenet_v2@0.5" in space.dropped


def test_a_study_starts_from_the_params_values_inside_the_space(tmp_path: Path) -> None:
    (tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5").touch()
    space = load_space(REPO / "recipes" / "tune.yaml", REPO / "params.yaml", (tmp_path,))
    params = read_yaml(REPO / "params.yaml")
    start = space.baseline(params)
    assert set(start) == {d.key for d in space.dims}  # the defaults lie inside it
    assert start["backbone"] == f"mobilenet_v2@{params['model']['alpha']:g}"
    assert start["train.class_weight"] == params["train"]["class_weight"]
    outside = merge(params, {"train": {"epochs": 99}})
    assert "train.epochs" not in space.baseline(outside)  # beyond high: TPE draws it


def test_apply_keeps_the_comments_and_checks_the_result(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    write_params(params, {"train.learning_rate": 0.0042, "train.fine_tune.layers": 40,
                          "model.alpha": 0.35, "train.fine_tune.learning_rate": 2e-05})
    text = params.read_text()
    assert "# Every choice of the pipeline" in text and "# pixels a side" in text
    loaded = load_params(params)
    assert (loaded.train.learning_rate, loaded.train.fine_tune.layers) == (0.0042, 40)
    assert loaded.train.fine_tune.learning_rate == 2e-05  # "2e-05" would read as a string
    with pytest.raises(ParamsError, match=r"train\.label_smoothing: needs train\.loss"):
        write_params(params, {"train.label_smoothing": 0.1})
    assert load_params(params).train.label_smoothing == 0.0  # left as it was


def test_a_float_flag_reads_back_as_a_float_after_dvc_writes_it() -> None:
    from ruamel.yaml import YAML

    for value in (2e-05, 1e-07, 0.003, 3.0012e-06):
        out = StringIO()
        YAML().dump({"x": dvc_float(value)}, out)  # as DVC writes a -S value
        read = yaml.safe_load(out.getvalue())["x"]
        assert isinstance(read, float) and math.isclose(read, value, rel_tol=1e-12), read
