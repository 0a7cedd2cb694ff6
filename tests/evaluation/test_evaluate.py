import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from imgclf import cli
from imgclf.data.shards import read_meta
from imgclf.evaluation import evaluate
from imgclf.evaluation.folder import FOLDER_KEY, FOLDER_METRICS, FOLDER_PLOTS, run_folder
from imgclf.models.saving import ModelInfo, save_model
from imgclf.params import EvaluateParams

# "unknown": the images above the model's OOD threshold (docs/ood.md)
METRIC_KEYS = {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc", "loss",
               "n", "ece", "per_class", "unknown"}
PNGS = ("confusion.png", "calibration.png", "misclassified.png")


def check_plots(plots: Path, class_names: list[str], n: int) -> None:
    """The plot data and pictures of one scored set of ``n`` images are well-formed."""
    confusion = json.loads((plots / "confusion.json").read_text())
    assert len(confusion) == n
    calibration = json.loads((plots / "calibration.json").read_text())
    assert calibration and sum(r["count"] for r in calibration) == n
    for row in calibration:
        assert set(row) == {"bin", "confidence", "accuracy", "count"}
        assert 0 <= row["accuracy"] <= 1 and 0 < row["confidence"] <= 1
    for name in PNGS:
        with Image.open(plots / name) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 200
    for folder in ("roc", "precision_recall"):
        assert {p.stem for p in (plots / folder).iterdir()} <= set(class_names)


def test_evaluate_writes_nested_metrics_and_plots(tiny_prepared: Path, tiny_model: Path,
                                                  tmp_path: Path) -> None:
    metrics_path, plots = tmp_path / "metrics" / "eval.json", tmp_path / "plots"
    evaluate.run(EvaluateParams(batch_size=5), tiny_prepared, tiny_model, metrics_path, plots)
    metrics = json.loads(metrics_path.read_text())
    meta = read_meta(tiny_prepared)
    assert set(metrics) == {"val", "test"}
    assert set(metrics["test"]) == METRIC_KEYS
    assert set(metrics["test"]["unknown"]) == {"threshold", "count", "share"}
    assert metrics["test"]["n"] == meta.counts["test"]
    assert set(metrics["test"]["per_class"]) == set(meta.class_names)
    assert metrics["test"]["accuracy"] > 0.8
    for split in ("val", "test"):
        assert 0 <= metrics[split]["ece"] <= 1
    confusion = json.loads((plots / "confusion.json").read_text())
    assert len(confusion) == meta.counts["test"]
    assert {r["actual"] for r in confusion} == set(meta.class_names)
    for folder, keys in (("roc", {"fpr", "tpr", "threshold"}),
                         ("precision_recall", {"precision", "recall", "threshold"})):
        files = sorted(p.stem for p in (plots / folder).iterdir())
        assert files == sorted(meta.class_names)
        rows = json.loads((plots / folder / f"{files[0]}.json").read_text())
        assert set(rows[0]) == keys
    check_plots(plots, meta.class_names, meta.counts["test"])
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        ["confusion.json", "calibration.json", "most_confused.json", "roc",
         "precision_recall", *PNGS])


def test_tta_changes_the_scores_not_the_form(tiny_prepared: Path, tmp_path: Path) -> None:
    """evaluate.tta reaches the scoring: flip and none give different probabilities."""
    meta = read_meta(tiny_prepared)
    # Untrained, so unsure: the trained tiny model is too confident for the mirror to
    # move its rounded loss.
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((meta.image_size, meta.image_size, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
        keras.layers.Dense(len(meta.class_names), activation="softmax")])
    model_path = tmp_path / "model.keras"
    save_model(model, model_path, ModelInfo(meta.class_names, meta.image_size))
    scores = {}
    for tta in ("none", "flip"):
        out = tmp_path / tta
        evaluate.run(EvaluateParams(batch_size=7, tta=tta), tiny_prepared, model_path,
                     out / "eval.json", out / "plots")
        scores[tta] = json.loads((out / "eval.json").read_text())
        # a model saved without the OOD score (as before it existed) counts no unknowns
        assert set(scores[tta]["test"]) == METRIC_KEYS - {"unknown"}
    assert scores["none"]["test"]["loss"] != scores["flip"]["test"]["loss"]
    assert scores["none"]["test"]["n"] == scores["flip"]["test"]["n"]


def test_evaluate_refuses_a_model_of_other_data(tiny_model: Path, tmp_path: Path,
                                                image_folder: object) -> None:
    from imgclf.data import split
    from imgclf.errors import UserError
    from imgclf.params import DataParams, SplitParams

    image_folder(tmp_path / "raw", ["x", "y"], per_class=10)  # type: ignore[operator]
    split.run(DataParams(image_size=16), SplitParams(), tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(UserError, match="retrain"):
        evaluate.run(EvaluateParams(), tmp_path / "prep", tiny_model, tmp_path / "m.json",
                     tmp_path / "plots")


def test_gallery_images_follow_the_scored_order(tmp_path: Path,
                                                image_folder: object) -> None:
    """Unshuffled, every split is scored in its records' order, even across shards, so
    the gallery's images are the scored ones."""
    from imgclf.data import split
    from imgclf.data.records import make_dataset
    from imgclf.params import DataParams, SplitParams

    image_folder(tmp_path / "raw", ["a", "b", "c"], per_class=20)  # type: ignore[operator]
    split.run(DataParams(image_size=16), SplitParams(train=0.5, val=0.25, test=0.25,
                                                     shard_mb=0.002),  # ~3 images a shard
              tmp_path / "raw", tmp_path / "prep")
    meta = read_meta(tmp_path / "prep")
    assert len(meta.splits["test"]) > 2
    scored = [(x.numpy().astype(np.uint8), y.numpy())
              for xs, ys in make_dataset(tmp_path / "prep", meta, "test", 4)
              for x, y in zip(xs, ys, strict=True)]
    y_true = np.array([y for _, y in scored])
    images = evaluate.split_images(tmp_path / "prep", "test", y_true)
    np.testing.assert_array_equal(images, np.stack([x for x, _ in scored]))
    with pytest.raises(ValueError, match="do not match"):
        evaluate.split_images(tmp_path / "prep", "test", y_true[::-1])


# --- evaluate --data FOLDER ----------------------------------------------------------------


@pytest.fixture
def labelled_folder(tmp_path: Path, image_folder: object) -> Path:
    """Folders ``red`` (6 red images and 2 green ones filed there by mistake, a broken
    file, a text file) and ``blue`` (6); green is missing; a hidden folder is skipped."""
    root = image_folder(tmp_path / "photos", ["red", "green", "blue"],  # type: ignore
                        per_class=6, seed=7)
    for name in ("green_000.png", "green_001.png"):
        (root / "green" / name).rename(root / "red" / f"mislabelled_{name}")
    (root / "green").rename(root / ".hidden")
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "red" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_evaluate_on_a_folder_writes_the_same_metrics_and_plots(
        labelled_folder: Path, tiny_model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the defaults are used
    code = cli.main(["evaluate", "--data", str(labelled_folder), "--model", str(tiny_model)])
    assert code == 0
    out, err = capsys.readouterr()
    assert "broken.jpg" in err and "not an image" in err
    assert "folder accuracy" in out and "1 unreadable files skipped" in out
    metrics = json.loads((tmp_path / FOLDER_METRICS).read_text())
    assert list(metrics) == [FOLDER_KEY]
    folder = metrics["folder"]
    assert set(folder) == METRIC_KEYS
    assert folder["n"] == 14
    assert folder["per_class"]["green"]["support"] == 0
    assert folder["per_class"]["red"]["support"] == 8
    assert folder["per_class"]["blue"]["support"] == 6
    assert folder["accuracy"] == pytest.approx(12 / 14, abs=1e-6)  # the mislabelled two
    plots = tmp_path / FOLDER_PLOTS
    check_plots(plots, ["blue", "green", "red"], 14)
    confusion = json.loads((plots / "confusion.json").read_text())
    assert confusion.count({"actual": "red", "predicted": "green"}) == 2
    with Image.open(plots / "misclassified.png") as im:  # two images, not the empty note
        assert im.height > 250
    assert not (tmp_path / "metrics" / "eval.json").exists()  # the stage's file is untouched


def test_evaluate_on_a_folder_with_explicit_outputs(labelled_folder: Path, tiny_model: Path,
                                                    tmp_path: Path) -> None:
    run_folder(EvaluateParams(batch_size=4), labelled_folder, tiny_model,
               tmp_path / "m.json", tmp_path / "p")
    assert json.loads((tmp_path / "m.json").read_text())["folder"]["n"] == 14
    check_plots(tmp_path / "p", ["blue", "green", "red"], 14)


def test_unknown_class_folders_are_named(labelled_folder: Path, tiny_model: Path,
                                         tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (labelled_folder / "cats").mkdir()
    (labelled_folder / "dogs").mkdir()
    code = cli.main(["evaluate", "--data", str(labelled_folder), "--model", str(tiny_model),
                     "--metrics", str(tmp_path / "m.json"), "--plots", str(tmp_path / "p")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "cats, dogs" in err and "blue, green, red" in err
    assert not (tmp_path / "m.json").exists()


def test_a_folder_without_images_is_a_user_error(tiny_model: Path, tmp_path: Path) -> None:
    from imgclf.errors import UserError

    (tmp_path / "data" / "red").mkdir(parents=True)
    with pytest.raises(UserError, match="no image files"):
        run_folder(EvaluateParams(), tmp_path / "data", tiny_model,
                   tmp_path / "m.json", tmp_path / "p")
