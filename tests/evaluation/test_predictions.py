"""The per-image predictions CSV and the most confused pairs, alone and as the evaluate
stage and ``imgclf evaluate --data`` write them (with a real tiny model)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf import cli
from imgclf.data.shards import read_meta
from imgclf.evaluation import evaluate
from imgclf.evaluation.figures import gallery_figure
from imgclf.evaluation.folder import FOLDER_PLOTS, FOLDER_PREDICTIONS
from imgclf.evaluation.predictions import (
    confused_line,
    most_confused,
    write_predictions,
)
from imgclf.models.saving import ModelInfo, save_model
from imgclf.params import EvaluateParams

NAMES = ["cats", "dogs", "snakes"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_most_confused_counts_each_off_diagonal_pair_largest_first() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([1, 1, 2, 0, 0, 1, 1, 1, 2, 0])
    assert most_confused(y_true, y_pred, NAMES) == [
        {"actual": "cats", "predicted": "dogs", "count": 2},
        {"actual": "cats", "predicted": "snakes", "count": 1},  # ties: the matrix's order
        {"actual": "dogs", "predicted": "cats", "count": 1},
        {"actual": "snakes", "predicted": "cats", "count": 1},
        {"actual": "snakes", "predicted": "dogs", "count": 1}]
    assert most_confused(y_true, y_pred, NAMES, min_count=2) == [
        {"actual": "cats", "predicted": "dogs", "count": 2}]
    assert most_confused(y_true, y_true, NAMES) == []


def test_confused_line_names_the_first_pairs_and_counts_the_rest() -> None:
    pairs = [{"actual": "cats", "predicted": "dogs", "count": 3},
             {"actual": "dogs", "predicted": "cats", "count": 1}]
    assert confused_line(pairs) == "cats -> dogs 3, dogs -> cats 1"
    assert confused_line(pairs, shown=1) == "cats -> dogs 3 (and 1 more pairs)"
    assert confused_line([]) == "no mistakes"


def test_predictions_csv_has_a_row_per_image(tmp_path: Path) -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    path = tmp_path / "out" / "predictions.csv"
    write_predictions(path, ["cats/a.jpg", "dogs/b,1.jpg"], np.array([0, 1]), probs, NAMES,
                      "test")
    rows = read_rows(path)
    assert list(rows[0]) == ["split", "path", "true", "predicted", "correct",
                             "p_cats", "p_dogs", "p_snakes"]
    assert rows[1]["path"] == "dogs/b,1.jpg"  # quoted, not split at the comma
    assert [(r["true"], r["predicted"], r["correct"]) for r in rows] == [
        ("cats", "cats", "1"), ("dogs", "snakes", "0")]
    assert float(rows[1]["p_snakes"]) == 0.6
    with pytest.raises(ValueError, match="do not match"):
        write_predictions(path, ["one.jpg"], np.array([0, 1]), probs, NAMES, "test")


def test_gallery_titles_name_the_files() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    files = ["cats/IMG_0001.jpg", "dogs/" + "a_very_long_name" * 3 + ".png"]
    fig = gallery_figure(np.zeros((2, 8, 8, 3), np.uint8), np.array([1, 0]), probs,
                         ["cats", "dogs"], files=files)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].splitlines()[0] == "IMG_0001.jpg"  # the base name, most confident first
    assert titles[1].startswith("a_very_long_name") and titles[1].splitlines()[0].endswith(
        "\u2026")


@pytest.fixture(scope="module")
def unsure_model(tiny_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained model of ``tiny_prepared``'s classes: it makes mistakes to list."""
    meta = read_meta(tiny_prepared)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((meta.image_size, meta.image_size, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
        keras.layers.Dense(len(meta.class_names), activation="softmax")])
    path = tmp_path_factory.mktemp("unsure") / "model.keras"
    save_model(model, path, ModelInfo(meta.class_names, meta.image_size))
    return path


def test_the_stage_writes_predictions_and_most_confused(
        tiny_prepared: Path, unsure_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "metrics"
    evaluate.run(EvaluateParams(batch_size=8), tiny_prepared, unsure_model, out / "eval.json",
                 out / "plots", out / "gallery.png", out / "predictions.csv")
    metrics = json.loads((out / "eval.json").read_text())
    rows = read_rows(out / "predictions.csv")
    manifest = read_rows(tiny_prepared / "manifest.csv")
    for split in ("val", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert len(mine) == metrics[split]["n"]
        correct = sum(int(r["correct"]) for r in mine)
        assert correct / len(mine) == pytest.approx(metrics[split]["accuracy"], abs=1e-6)
        listed = {r["path"] for r in manifest if r.get("split") == split}
        assert not listed or {r["path"] for r in mine} == listed
    assert all(r["path"].split("/")[0] == r["true"] for r in rows)  # raw/<class>/<file>
    confused = json.loads((out / "plots" / "most_confused.json").read_text())
    test = [r for r in rows if r["split"] == "test"]
    wrong = [(r["true"], r["predicted"]) for r in test if r["correct"] == "0"]
    assert confused and sum(p["count"] for p in confused) == len(wrong)
    top = confused[0]
    assert wrong.count((top["actual"], top["predicted"])) == top["count"]
    assert [p["count"] for p in confused] == sorted((p["count"] for p in confused),
                                                     reverse=True)
    out_text = capsys.readouterr().out
    assert f"most confused (actual -> predicted images): {top['actual']} -> " \
           f"{top['predicted']} {top['count']}" in out_text


def test_evaluate_on_a_folder_lists_the_wrong_photos(
        image_folder: object, tiny_model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two green photos filed under red: the CSV and the pairs name them."""
    root = image_folder(tmp_path / "photos", ["red", "green", "blue"],  # type: ignore
                        per_class=6, seed=7)
    for name in ("green_000.png", "green_001.png"):
        (root / "green" / name).rename(root / "red" / f"mislabelled_{name}")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--data", str(root), "--model", str(tiny_model)]) == 0
    rows = read_rows(tmp_path / FOLDER_PREDICTIONS)
    assert len(rows) == 18 and {r["split"] for r in rows} == {"folder"}
    wrong = {Path(r["path"]).name for r in rows if r["correct"] == "0"}
    assert wrong == {"mislabelled_green_000.png", "mislabelled_green_001.png"}
    assert all(Path(r["path"]).is_file() for r in rows)
    confused = json.loads((tmp_path / FOLDER_PLOTS / "most_confused.json").read_text())
    assert confused[0] == {"actual": "red", "predicted": "green", "count": 2}
    assert "red -> green 2" in capsys.readouterr().out
