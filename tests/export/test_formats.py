"""The table of export formats, the soft/hard bounds, and what the committed metrics hold.

A format added to the table is written, loaded back and scored by the stage with no
other change (``variant``: a Keras model written as a format of its own). The model
here puts two of the three classes at 50/50, so a format that merely wobbles there
disagrees with Keras on those images alone: a soft miss, not a broken conversion.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import yaml

from imgclf.errors import UserError
from imgclf.export import stage
from imgclf.export.bounds import agrees_with_keras
from imgclf.export.formats import FORMATS, Format, Source
from imgclf.export.scoring import CONFIDENT, compare
from imgclf.inference.runtimes import KERAS, MODEL_FORMATS, read_runtime_info
from imgclf.models.info import ModelInfo
from imgclf.params import ExportFormat, ExportParams

REPO = Path(__file__).resolve().parents[2]
# A key naming what the machine that ran a stage measures: timings, throughput, bytes.
MACHINE_KEY = re.compile(r"latency|(^|_)ms($|_)|second|(^|_)s$|per_s|throughput|duration"
                         r"|elapsed|time|bytes")


def test_the_table_is_the_params_schema() -> None:
    assert tuple(FORMATS) == get_args(ExportFormat)
    assert set(ExportParams().formats) <= FORMATS.keys()
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.runtime in MODEL_FORMATS.values()
        assert fmt.file.endswith(fmt.runtime.suffix)  # what its runtime loads
        assert fmt.bounds and 0 < fmt.tolerance < 1
    assert len({f.file for f in FORMATS.values()}) == len(FORMATS)


def test_compare_counts_disagreements_where_keras_is_confident() -> None:
    reference = np.array([[0.9, 0.05, 0.05], [0.5, 0.49, 0.01], [0.3, 0.3, 0.4],
                          [0.1, 0.8, 0.1]], np.float32)
    wobbled = reference.copy()
    wobbled[1] = [0.49, 0.5, 0.01]  # a near-tie flipped
    wobbled[2] = [0.4, 0.3, 0.3]  # an unsure answer changed
    got = compare(wobbled, reference)
    assert got["agreement"] == 0.5
    assert got["confident_disagreements"] == 0 and got["confident_agreement"] == 1.0
    assert got["max_prob_diff"] == pytest.approx(0.1)
    broken = np.roll(reference, 1, axis=1)  # classes shifted: confident answers change
    got = compare(broken, reference)
    assert got["confident_disagreements"] == 2 and got["confident_agreement"] == 0.0
    assert compare(reference[:0], reference[:0])["confident_agreement"] == 1.0


# --- a format added to the table, on a model with answers at 50/50 ----------------------------


def tie_model(size: int, red_sign: float, green_bias: float) -> Any:
    """Mean colour -> (blue, green, red): red confident on red images (``red_sign`` 1), and
    blue vs green at 50/50 on the others, ``green_bias`` tipping the tie."""
    import keras

    inputs = keras.Input((size, size, 3))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    kernel = np.zeros((3, 3), np.float32)
    kernel[:, 2] = red_sign * np.array([0.1, -0.1, -0.1])
    dense.set_weights([kernel, np.array([0.0, green_bias, 0.0], np.float32)])
    return model


@pytest.fixture
def tie_keras(tiny_prepared: Path, tmp_path: Path) -> Path:
    """A .keras model of ``tie_model`` for ``tiny_prepared``'s classes (blue, green, red)."""
    from imgclf.models.saving import save_model

    path = tmp_path / "tie.keras"
    save_model(tie_model(16, 1.0, 0.01), path, ModelInfo(["blue", "green", "red"], 16))
    return path


def add_variant(monkeypatch: pytest.MonkeyPatch, red_sign: float, green_bias: float) -> str:
    """Add a format to the table: ``tie_model(red_sign, green_bias)`` as a .keras file."""
    from imgclf.models.saving import save_model

    def write(source: Source, path: Path) -> None:
        save_model(tie_model(source.info.image_size, red_sign, green_bias), path, source.info)

    fmt = Format("variant", "variant.keras", KERAS, write, (agrees_with_keras,), 1.0)
    monkeypatch.setitem(FORMATS, fmt.name, fmt)
    return fmt.name


def run_stage(params: ExportParams, data: Path, model: Path, out: Path) -> dict:
    stage.run(params, data, model, out / "export", out / "export.json")
    return json.loads((out / "export.json").read_text())


def test_wobble_at_50_50_is_a_soft_miss_written_and_warned(
        tiny_prepared: Path, tie_keras: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    name = add_variant(monkeypatch, red_sign=1.0, green_bias=-0.01)  # the ties tip to blue
    # A name outside ExportFormat: build without the params' validation.
    params = ExportParams.model_construct(formats=[name], latency_runs=2)
    metrics = run_stage(params, tiny_prepared, tie_keras, tmp_path)
    row = metrics[name]
    assert read_runtime_info(tmp_path / "export" / "variant.keras").class_names[2] == "red"
    assert 0.2 < row["agreement"] < 0.5  # only the red images agree: a third
    assert row["confident_disagreements"] == 0 and row["confident_agreement"] == 1.0
    assert 0 < row["max_prob_diff"] < 1 - CONFIDENT
    assert row["accuracy_delta"] == pytest.approx(row["accuracy"] - metrics["keras"]["accuracy"],
                                                  abs=1e-4)
    (soft,) = metrics["soft_misses"]
    assert soft.startswith(f"{name} agrees with the Keras model on ")
    assert soft.endswith("wobble at the decision boundary")
    assert f"export: warning: {soft} (export.strict: true" in capsys.readouterr().err
    with pytest.raises(UserError, match=f"^missed bounds: {name} agrees .* wobble at the"):
        run_stage(ExportParams.model_construct(formats=[name], latency_runs=2, strict=True),
                  tiny_prepared, tie_keras, tmp_path / "strict")


def test_changed_confident_answers_are_a_hard_miss(
        tiny_prepared: Path, tie_keras: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = add_variant(monkeypatch, red_sign=-1.0, green_bias=0.01)  # red images lost
    # A name outside ExportFormat: build without the params' validation.
    params = ExportParams.model_construct(formats=[name], latency_runs=2)
    with pytest.raises(UserError, match=f"^missed bounds: {name} agrees with the Keras model "
                       r"on 0\.00% of the test images it is confident on"):
        run_stage(params, tiny_prepared, tie_keras, tmp_path)
    metrics = json.loads((tmp_path / "export.json").read_text())
    assert metrics[name]["confident_disagreements"] > 0 and metrics["soft_misses"] == []


# --- the committed metrics: nothing that depends on the machine ---------------------------------


def machine_keys(obj: Any, prefix: str = "") -> list[str]:
    """The keys of a metrics file (nested: ``a.b``) that name a figure of the machine."""
    if not isinstance(obj, dict):
        return []
    found = []
    for key, value in obj.items():
        if MACHINE_KEY.search(str(key)):
            found.append(prefix + str(key))
        found += machine_keys(value, f"{prefix}{key}.")
    return found


def committed_metrics_files() -> list[str]:
    """Every ``metrics:`` file of dvc.yaml that is in git."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    paths = [next(iter(m)) if isinstance(m, dict) else m
             for s in stages.values() for m in s.get("metrics", [])]
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--", *paths],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return listed.stdout.split()


def test_machine_keys_are_found() -> None:
    assert machine_keys({"onnx": {"latency_ms_p50": 1.0, "images_per_s": 9, "accuracy": 1},
                         "train_seconds": 3, "size_bytes": 10, "n": 4, "step": 2}) == [
        "onnx.latency_ms_p50", "onnx.images_per_s", "train_seconds", "size_bytes"]


def test_committed_metrics_hold_no_machine_figures() -> None:
    """Timings and byte sizes differ on every machine: in a committed metrics file they
    would dirty it on each repro and fill ``dvc metrics diff`` with noise."""
    files = committed_metrics_files()
    assert "metrics/export.json" in files
    found = {f: keys for f in files
             if (keys := machine_keys(json.loads((REPO / f).read_text(encoding="utf-8"))))}
    assert not found, f"machine figures in committed metrics files (rerun the stage): {found}"


def test_the_machine_figures_file_is_ignored_by_git() -> None:
    path = stage.machine_path("metrics/export.json")
    assert path == Path("metrics/export_machine.json")
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(path)])
    assert ignored.returncode == 0, f"{path} must be git-ignored"
