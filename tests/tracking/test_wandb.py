"""W&B tracking of train and evaluate (imgclf.tracking.wandb_run), never on the network.

The stages run for real on the tiny generated data through ``imgclf train`` and
``imgclf evaluate`` (in this process), with W&B offline, or online against a closed
port, and every folder W&B writes to inside ``tmp_path``. What a run recorded is read
back from its offline transaction log, ``run-<id>.wandb``: wandb 0.31 has no reader
for it any more (``wandb.sdk.internal.datastore`` is gone) and, offline, writes no
``wandb-summary.json`` or ``config.yaml``; the log is a LevelDB-style record log of
``wandb.proto.wandb_internal_pb2.Record`` messages, parsed by ``read_records`` below.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from imgclf import cli
from imgclf.data.shards import read_meta, read_split
from imgclf.evaluation.metrics import worst_mistakes
from imgclf.params import load_params
from imgclf.tracking.charts import misclassified_table
from imgclf.tracking.run_info import PROBE_TIMEOUT_S, data_hash, flatten, run_group
from imgclf.tracking.wandb_run import Tracker
from imgclf.training import train

EPOCHS = 2
PARAMS = {
    "data": {"image_size": 16},
    "model": {"arch": "small"},
    "train": {"epochs": EPOCHS, "batch_size": 8, "learning_rate": 0.003,
              "early_stopping_patience": 0},
    "wandb": {"project": "imgclf-tests", "misclassified": 5},
}
PREPARED_MD5 = "0123456789abcdef0123456789abcdef.dir"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]


# --- reading an offline run -----------------------------------------------------------

BLOCK = 32 * 1024  # the record log's block size
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4  # chunk types of a record split across blocks


def read_records(path: Path) -> Iterator[Any]:
    """The ``Record`` protos of a ``.wandb`` file.

    The file starts with a 7-byte header (``:W&B``, magic 0xBEE1, version); then blocks
    of 32 KiB hold chunks, each a 7-byte header (crc32, length, type) and its bytes; a
    block's last few bytes, too short for a header, are padding.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue  # zero padding
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What one offline run recorded."""

    folder: Path
    job_type: str = ""
    group: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (type, name)


def read_run(folder: Path) -> OfflineRun:
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for record in read_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.job_type, run.group, run.name = r.job_type, r.run_group, r.display_name
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json)
                                for i in record.summary.update})
        elif kind == "artifact":
            run.artifacts.append((record.artifact.type, record.artifact.name))
    return run


def offline_runs(wandb_dir: Path) -> dict[str, OfflineRun]:
    """The offline runs under ``$WANDB_DIR``, by job type."""
    runs = [read_run(p) for p in sorted((wandb_dir / "wandb").glob("offline-run-*"))]
    return {run.job_type: run for run in runs}


# --- a project to run the stages in ---------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed git + DVC project with params.yaml and a dvc.lock, as the cwd.

    Every folder W&B writes to is under ``tmp_path``, and W&B is offline with no key.
    """
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (root / ".gitignore").write_text("/wandb/\n/out/\n.env\n")
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"split": {
        "cmd": "imgclf split", "outs": [{"path": "data/prepared", "hash": "md5",
                                         "md5": PREPARED_MD5, "nfiles": 6}]}}}))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    # A DVC repo, as a real project is (DVCLive would make one, changing git's index).
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "project"], cwd=root, check=True)
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "DVC_EXP_NAME", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name, folder in (("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "wandb_cache"),
                         ("WANDB_DATA_DIR", "wandb_data"), ("WANDB_CONFIG_DIR", "wandb_config")):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(name, str(tmp_path / folder))
    monkeypatch.chdir(root)
    return root


def run_stages(prepared: Path, *stages: str) -> None:
    """``imgclf train`` and/or ``imgclf evaluate`` on ``prepared``, into ``./out``."""
    for stage in stages:
        paths = (["--live", "out/live"] if stage == "train"
                 else ["--metrics", "out/eval.json", "--plots", "out/plots"])
        code = cli.main([stage, "--data", str(prepared), "--model", "out/model.keras", *paths])
        assert code == 0, f"imgclf {stage} failed"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


# --- the tests ------------------------------------------------------------------------


@pytest.mark.slow
def test_offline_runs_record_epochs_metrics_config_and_artifacts(
        project: Path, tiny_prepared: Path, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    run_stages(tiny_prepared, "train", "evaluate")
    out = capfd.readouterr().out
    runs = offline_runs(tmp_path / "wandb_dir")
    assert set(runs) == {"train", "evaluate"}
    assert not (project / "wandb").exists()  # WANDB_DIR is honoured

    rev = git(project, "rev-parse", "--short", "HEAD")
    for job, run in runs.items():
        assert (run.group, run.name) == (rev, f"{rev}-{job}")  # one group, named by git
        assert run.config["git_rev"] == git(project, "rev-parse", "HEAD")
        assert run.config["data_hash"] == PREPARED_MD5
        assert run.config["train"]["epochs"] == EPOCHS
        assert run.config["wandb"]["project"] == "imgclf-tests"
        assert f"{job}: W&B run saved offline; upload it with: wandb sync " in out

    train_run = runs["train"]
    assert [row.get("epoch") for row in train_run.history] == list(range(1, EPOCHS + 1))
    for row in train_run.history:  # one row per epoch
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= row.keys()
    assert ("model", "model") in train_run.artifacts
    assert ("dataset", "split-manifest") in train_run.artifacts

    evaluate_run = runs["evaluate"]
    metrics = json.loads((project / "out/eval.json").read_text())
    assert evaluate_run.summary["test/accuracy"] == metrics["test"]["accuracy"]
    assert evaluate_run.summary["val/f1"] == metrics["val"]["f1"]
    names = read_meta(tiny_prepared).class_names
    assert f"test/per_class/{names[0]}/auroc" in evaluate_run.summary
    charts = {key.removeprefix("_wandb/visualize/") for key in evaluate_run.config
              if key.startswith("_wandb/visualize/")}
    assert charts == {"test/confusion_matrix", "test/roc", "test/precision_recall"}
    logged = set().union(*evaluate_run.history)
    assert any(key.startswith("test/misclassified/") for key in logged)


@pytest.mark.slow
@pytest.mark.parametrize("key_from", ["environment", "dotenv"])
def test_no_secret_reaches_any_file_or_output(
        project: Path, tiny_prepared: Path, tmp_path: Path, key_from: str,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    wandb_key = "wandbkey_" + secrets.token_hex(16)
    kaggle_key = "kagglekey_" + secrets.token_hex(16)
    monkeypatch.setenv("KAGGLE_KEY", kaggle_key)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    if key_from == "environment":
        monkeypatch.setenv("WANDB_API_KEY", wandb_key)
    else:  # read from .env by the tracker and handed to W&B in its settings
        (project / ".env").write_text(f"WANDB_API_KEY={wandb_key}\nKAGGLE_KEY={kaggle_key}\n")
    run_stages(tiny_prepared, "train", "evaluate")
    captured = capfd.readouterr()

    runs = offline_runs(tmp_path / "wandb_dir")
    assert set(runs) == {"train", "evaluate"}  # the key did not make them go online
    for secret in (wandb_key, kaggle_key):
        assert secret not in captured.out and secret not in captured.err
        leaks = [p for p in tmp_path.rglob("*")
                 if p.is_file() and p != project / ".env"
                 and secret.encode() in p.read_bytes()]
        assert not leaks, f"{secret[:9]}... written to {leaks}"
    assert (project / "out/eval.json").is_file()


def closed_port() -> socket.socket:
    """A bound, not listening, socket: connections to its port are refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.slow
def test_unreachable_server_costs_one_warning_and_bounded_time(
        project: Path, tiny_prepared: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    wandb_key = "wandbkey_" + secrets.token_hex(16)
    with closed_port() as sock:
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", wandb_key)
        params = load_params()
        started = time.monotonic()
        tracker = Tracker.start(params, "train")
        waited = time.monotonic() - started
        with tracker:
            train.run(params.model, params.train, tiny_prepared, "out/model.keras",
                      "out/live", callbacks=[tracker.callback()])
    captured = capfd.readouterr()
    # The run fails over to offline at once: a few seconds, not wandb.init's timeout.
    assert waited < PROBE_TIMEOUT_S + 5, f"W&B start took {waited:.0f} s"
    assert (project / "out/model.keras").is_file()
    warnings = [line for line in captured.err.splitlines() if "W&B" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("train: warning: W&B server 127.0.0.1:")
    assert "logging offline instead" in warnings[0]
    assert "wandb sync" in captured.out  # nothing lost: it can be uploaded later
    assert wandb_key not in captured.out + captured.err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and wandb_key.encode() in
                p.read_bytes()]


@pytest.mark.slow
def test_disabled_tracking_creates_no_wandb_folder(
        project: Path, tiny_prepared: Path, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["wandb"]["enabled"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_stages(tiny_prepared, "train", "evaluate")
    assert not (tmp_path / "wandb_dir" / "wandb").exists()
    assert not (project / "wandb").exists()
    assert "W&B" not in "".join(capfd.readouterr())
    assert (project / "out/eval.json").is_file()


def test_empty_variables_count_as_unset(project: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    """`docker compose` passes WANDB_MODE= from .env: W&B must still run (offline)."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY"):
        monkeypatch.setenv(name, "")
    tracker = Tracker.start(load_params(), "train")
    assert tracker.active, capfd.readouterr().err
    tracker.log({"loss": 1.0})
    tracker.finish()
    assert "WANDB_MODE" not in os.environ
    run = offline_runs(tmp_path / "wandb_dir")["train"]
    assert run.history[0]["loss"] == 1.0
    assert "warning" not in capfd.readouterr().err


def test_wandb_mode_disabled_turns_tracking_off(project: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = Tracker.start(load_params(), "train")
    assert not tracker.active
    tracker.log({"loss": 1.0})  # every method is a no-op
    tracker.log_summary({"test": {"accuracy": 1.0}})
    tracker.log_artifact(project / "params.yaml", "model")
    tracker.finish()
    assert not (tmp_path / "wandb_dir" / "wandb").exists()


def test_misclassified_table_lists_the_worst_first(tiny_prepared: Path) -> None:
    images, labels = read_split(tiny_prepared, "test")
    names = read_meta(tiny_prepared).class_names
    n = len(labels)
    probs = np.full((n, 3), 0.1, np.float32)
    probs[np.arange(n), labels] = 0.8  # right by default ...
    wrong = {0: 0.5, 3: 0.9, 5: 0.7}  # ... except these, predicted with that confidence
    for i, confidence in wrong.items():
        probs[i] = 0.0
        probs[i, (labels[i] + 1) % 3] = confidence
        probs[i, labels[i]] = 1 - confidence
    # The evaluate stage ranks the mistakes; the tracker shows the rows it is handed.
    table = misclassified_table(images, labels, probs, names, worst_mistakes(labels, probs)[:2])
    assert table.columns == ["image", "true", "predicted", "confidence", "index"]
    assert [row[4] for row in table.data] == [3, 5]  # most confidently wrong first
    assert [row[3] for row in table.data] == [pytest.approx(0.9), pytest.approx(0.7)]
    assert table.data[0][1] == names[labels[3]]
    assert table.data[0][2] == names[(labels[3] + 1) % 3]


def test_group_is_the_dvc_experiment_else_the_git_revision(
        project: Path, tmp_path: Path) -> None:
    rev = git(project, "rev-parse", "--short", "HEAD")
    assert run_group({}, project) == rev
    assert run_group({"DVC_EXP_NAME": "sgd-run"}, project) == "sgd-run"
    (project / "dvc.lock").write_text("stages: {}\n")  # written by dvc itself: still clean
    assert run_group({}, project) == rev
    (project / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "split": {"seed": 3}}))
    assert run_group({}, project) == f"{rev}-dirty"
    outside = tmp_path / "outside"
    outside.mkdir()
    assert run_group({}, outside) == "local"


def test_data_hash_comes_from_dvc_lock(project: Path, tmp_path: Path) -> None:
    assert data_hash(project / "dvc.lock") == PREPARED_MD5
    assert data_hash(tmp_path / "missing.lock") is None
    (tmp_path / "bad.lock").write_text("stages: [not, a, mapping]\n")
    assert data_hash(tmp_path / "bad.lock") is None


def test_flatten_joins_nested_keys() -> None:
    assert flatten({"test": {"accuracy": 0.9, "per_class": {"cat": {"f1": 1.0}}}, "n": 3}) == {
        "test/accuracy": 0.9, "test/per_class/cat/f1": 1.0, "n": 3}


@pytest.mark.slow
def test_the_audit_run_gets_its_tables_and_counts(project: Path, tiny_prepared: Path,
                                                  tmp_path: Path) -> None:
    from imgclf.audit.records import read_records
    from imgclf.data.stratify import SPLITS

    records = read_records(tiny_prepared)
    rng = np.random.default_rng(0)
    embed = np.abs(rng.normal(0, 3, (3, 16))[records.labels]
                   + rng.normal(0, 1, (len(records), 16)))
    features = tmp_path / "features"
    features.mkdir()
    for s, name in enumerate(SPLITS):
        np.save(features / f"{name}-embed.npy", embed[records.split_of == s].astype(np.float16))
        np.save(features / f"{name}-labels.npy", records.labels[records.split_of == s])
    (features / "features.json").write_text("{}")
    assert cli.main(["audit", "--data", str(tiny_prepared), "--features", str(features),
                     "--raw", "", "--out", "out/audit"]) == 0
    run = offline_runs(tmp_path / "wandb_dir")["audit"]
    counts = json.loads((project / "out/audit/counts.json").read_text())
    assert run.summary["audit/images"] == counts["images"] == len(records)
    assert run.summary["audit/quality/dark"] == counts["quality"]["dark"]
    logged = set().union(*run.history)
    for kind in ("label_issues", "outliers", "near_duplicates", "leaks", "quality"):
        assert any(key.startswith(f"audit/{kind}") for key in logged), (kind, logged)
