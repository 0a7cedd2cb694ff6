"""The audit's findings on a set with known faults: flipped labels, mirrored leaks,
outliers; and its scores against cleanlab's and CleanVision's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgclf.audit import findings as fd
from imgclf.audit.neighbours import nearest, outliers
from imgclf.audit.quality import pixel_scores, size_scores
from imgclf.audit.stage import embedding_findings
from imgclf.params import AuditParams


def audit(faulty: Any, tmp: Path, write_features: Callable[..., Path]) -> fd.Findings:
    features = write_features(tmp / "features", faulty.embed, faulty.records.labels,
                              faulty.records.split_of)
    found = fd.Findings()
    embedding_findings(found, faulty.records, features, AuditParams())
    return found


def rows_of(found: fd.Findings, kind: str, records: Any) -> list[int]:
    where = {p: i for i, p in enumerate(records.paths)}
    return [where[r["path"]] for r in found.tables[kind]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_issues_hold_the_flips_and_mirrored_copies_are_leaks(
        seed: int, tmp_path: Path, faulty_set: Callable[..., Any],
        features_writer: Callable[..., Path]) -> None:
    faulty = faulty_set(seed)
    found = audit(faulty, tmp_path, features_writer)
    flagged = rows_of(found, "label_issues", faulty.records)
    recall = np.isin(faulty.flips, flagged).mean()
    assert recall >= 0.9, (recall, len(flagged), len(faulty.flips))
    assert len(flagged) <= 2 * len(faulty.flips), (len(flagged), len(faulty.flips))
    first = found.tables["label_issues"][0]
    assert first["given"] != first["suggested"] and 0 <= first["score"] < 0.5
    paths = faulty.records.paths
    leaks = {(r["path"], r["other_path"]) for r in found.tables["leaks"]}
    for a, b in faulty.mirrors:
        assert (paths[a], paths[b]) in leaks, (paths[a], paths[b])
    assert all(r["leak"] for r in found.tables["leaks"])
    # Nothing but the copies is that alike.
    assert len(found.tables["near_duplicates"]) == len(faulty.mirrors)


def test_outlier_scores_are_cleanlabs(tmp_path: Path) -> None:
    from cleanlab.outlier import OutOfDistribution

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 16))
    z = (centres[np.arange(300) % 3] + 0.3 * rng.normal(size=(300, 16))).astype(np.float32)
    z[7] = rng.normal(size=16)  # in no cluster
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    ours = outliers(nearest(unit)[0])
    theirs = OutOfDistribution().fit_score(features=z)
    np.testing.assert_allclose(ours.score, theirs, rtol=2e-4, atol=2e-5)
    assert ours.flagged[0] == 7


def test_quality_scores_are_cleanvisions(tmp_path: Path) -> None:
    from cleanvision import Imagelab
    from PIL import Image

    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    images = {"dark": (noisy // 12), "flat": np.full((48, 48, 3), 128, np.uint8),
              "noisy": noisy, "wide": np.repeat(noisy, 4, axis=1)[:, :150]}
    for name, pixels in images.items():
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / f"{name}.png")
    lab = Imagelab(data_path=str(tmp_path))
    lab.find_issues({"dark": {}, "blurry": {}, "low_information": {}, "odd_aspect_ratio": {}},
                    n_jobs=1, verbose=False)
    issues = lab.issues
    issues.index = [Path(p).stem for p in issues.index]
    for name, pixels in images.items():
        dark, blurry, low_info = pixel_scores(pixels.astype(np.uint8))
        row = issues.loc[name]
        assert dark == pytest.approx(row["dark_score"], abs=1e-6), name
        assert blurry == pytest.approx(row["blurry_score"], abs=1e-6), name
        assert low_info == pytest.approx(row["low_information_score"], abs=1e-6), name
    aspect, _ = size_scores(np.array([p.shape[1::-1] for p in images.values()]))
    np.testing.assert_allclose(aspect, issues.loc[list(images), "odd_aspect_ratio_score"])
    assert bool(issues.loc["dark", "is_dark_issue"]) and bool(
        issues.loc["flat", "is_low_information_issue"])


def test_odd_size_follows_the_quartiles() -> None:
    sizes = np.array([[400, 300]] * 20 + [[420, 310]] * 20 + [[4000, 3000], [20, 15]])
    _, odd = size_scores(sizes)
    assert (odd[:40] >= 0.5).all() and (odd[40:] < 0.5).all()
