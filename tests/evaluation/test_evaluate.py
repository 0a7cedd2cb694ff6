import json
from pathlib import Path

from imgclf.data.shards import read_meta
from imgclf.evaluation import evaluate
from imgclf.params import EvaluateParams

METRIC_KEYS = {"accuracy", "precision", "recall", "f1", "auroc", "loss", "n", "per_class"}


def test_evaluate_writes_nested_metrics_and_plots(tiny_prepared: Path, tiny_model: Path,
                                                  tmp_path: Path) -> None:
    metrics_path, plots = tmp_path / "metrics" / "eval.json", tmp_path / "plots"
    evaluate.run(EvaluateParams(batch_size=5), tiny_prepared, tiny_model, metrics_path, plots)
    metrics = json.loads(metrics_path.read_text())
    meta = read_meta(tiny_prepared)
    assert set(metrics) == {"val", "test"}
    assert set(metrics["test"]) == METRIC_KEYS
    assert metrics["test"]["n"] == meta.counts["test"]
    assert set(metrics["test"]["per_class"]) == set(meta.class_names)
    assert metrics["test"]["accuracy"] > 0.8
    confusion = json.loads((plots / "confusion.json").read_text())
    assert len(confusion) == meta.counts["test"]
    assert {r["actual"] for r in confusion} == set(meta.class_names)
    for folder, keys in (("roc", {"fpr", "tpr", "threshold"}),
                         ("precision_recall", {"precision", "recall", "threshold"})):
        files = sorted(p.stem for p in (plots / folder).iterdir())
        assert files == sorted(meta.class_names)
        rows = json.loads((plots / folder / f"{files[0]}.json").read_text())
        assert set(rows[0]) == keys


def test_evaluate_refuses_a_model_of_other_data(tiny_model: Path, tmp_path: Path,
                                                image_folder: object) -> None:
    import pytest

    from imgclf.data import split
    from imgclf.errors import UserError
    from imgclf.params import DataParams, SplitParams

    image_folder(tmp_path / "raw", ["x", "y"], per_class=10)  # type: ignore[operator]
    split.run(DataParams(image_size=16), SplitParams(), tmp_path / "raw", tmp_path / "prep")
    with pytest.raises(UserError, match="retrain"):
        evaluate.run(EvaluateParams(), tmp_path / "prep", tiny_model, tmp_path / "m.json",
                     tmp_path / "plots")
