"""train.strategy: the cluster roles read from TF_CONFIG, and two workers training one model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import yaml

from imgclf.errors import UserError
from imgclf.models.saving import load_model
from imgclf.params import params_from_dict
from imgclf.training import distribute, train

WORKER_TIMEOUT_S = 240
DIGEST_LINE = re.compile(r"train: final weights sha256 ([0-9a-f]{64}) \(worker (\d+) of (\d+)\)")


def tf_config(cluster: dict[str, list[str]], kind: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


TWO_WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


# --- TF_CONFIG --------------------------------------------------------------------------


@pytest.mark.parametrize("cluster,kind,index,expected", [
    (TWO_WORKERS, "worker", 0, distribute.Task(index=0, count=2, chief=True)),
    (TWO_WORKERS, "worker", 1, distribute.Task(index=1, count=2, chief=False)),
    # With a chief task, it writes, and worker 0 is just the second process.
    ({"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "chief", 0,
     distribute.Task(index=0, count=3, chief=True)),
    ({"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "worker", 0,
     distribute.Task(index=1, count=3, chief=False)),
    ({"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "worker", 1,
     distribute.Task(index=2, count=3, chief=False)),
])
def test_task_and_chief_come_from_tf_config(cluster: dict[str, list[str]], kind: str,
                                            index: int, expected: distribute.Task) -> None:
    env = tf_config(cluster, kind, index)
    assert distribute.current_task("multi_worker", env) == expected
    assert distribute.is_chief("multi_worker", env) is expected.chief


def test_other_strategies_ignore_tf_config() -> None:
    # A stray TF_CONFIG must not stop a one-machine run from writing its outputs.
    env = tf_config(TWO_WORKERS, "worker", 1)
    for name in ("auto", "mirrored"):
        assert distribute.current_task(name, env) == distribute.ALONE
        assert distribute.is_chief(name, env)


@pytest.mark.parametrize("value,expected", [
    (None, "TF_CONFIG: not set"),
    ("  ", "TF_CONFIG: not set"),
    ("{cluster", "TF_CONFIG: not valid JSON"),
    ("[1, 2]", "TF_CONFIG: not a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "no cluster.worker list"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}',
     "cluster.worker must be a list of host:port addresses"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker"}}',
     "cluster.ps is not supported"),
    ('{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief"}}',
     "cluster.chief lists more than one address"),
    ('{"cluster": {"worker": ["a:1"]}}', "task.type must be chief or worker"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
     "task.type must be chief or worker"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "task.index must be 0 .. 1 (the worker list's positions), got 2"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
     "task.index must be 0 .. 0"),
])
def test_bad_tf_config_is_one_line_saying_what_to_set(value: str | None, expected: str) -> None:
    env = {} if value is None else {"TF_CONFIG": value}
    with pytest.raises(UserError) as info:
        distribute.read_tf_config(env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "train.strategy multi_worker needs it set" in message
    assert '"cluster": {"worker": [' in message  # an example to copy


def test_multi_worker_without_tf_config_fails_before_tensorflow_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG: not set"):
        distribute.make_strategy("multi_worker")


def test_the_cli_reports_a_missing_tf_config(tiny_prepared: Path, tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"model": {"arch": "small"}, "train": {"strategy": "multi_worker"}}))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    run = subprocess.run([sys.executable, "-m", "imgclf", "train", "--data", str(tiny_prepared)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(
        "imgclf train: error: TF_CONFIG: not set; train.strategy multi_worker needs it")
    assert not (tmp_path / "models").exists()


def test_auto_on_one_device_is_the_default_strategy() -> None:
    if len(tf.config.list_physical_devices("GPU")) > 1:
        pytest.skip("several GPUs: auto mirrors across them")
    strategy = distribute.make_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert not tf.distribute.has_strategy()  # Keras then trains exactly as without one
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_is_a_mirrored_strategy() -> None:
    strategy = distribute.make_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == max(1, len(tf.config.list_physical_devices("GPU")))


# --- weights digest ---------------------------------------------------------------------


def test_weights_digest_sees_every_weight_and_survives_a_save(tiny_model: Path,
                                                              tmp_path: Path) -> None:
    from imgclf.models.saving import ModelInfo, save_model

    model, info = load_model(tiny_model)
    digest = distribute.weights_digest(model)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    save_model(model, tmp_path / "again.keras", ModelInfo(info.class_names, info.image_size))
    assert distribute.weights_digest(load_model(tmp_path / "again.keras")[0]) == digest
    for i in (0, len(model.weights) - 1):  # the first and the last weight both count
        variable = model.weights[i]
        original = np.array(variable.numpy())
        changed = original.copy()
        changed.flat[0] += 1
        variable.assign(changed)
        assert distribute.weights_digest(model) != digest
        variable.assign(original)
    assert distribute.weights_digest(model) == digest


# --- training ---------------------------------------------------------------------------


def small_params(strategy: str, wandb: bool = False) -> dict[str, Any]:
    # No dropout, no augmentation and plain SGD: nothing random or sign-sensitive, so
    # training split over two workers must give the one-process weights up to rounding.
    return {"model": {"arch": "small", "dropout": 0.0},
            "train": {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.0,
                      "batch_size": 6, "epochs": 1, "early_stopping_patience": 0,
                      "augment": {"flip": False}, "strategy": strategy},
            "wandb": {"enabled": wandb, "project": "imgclf-tests"}}



def run_workers(commands: list[list[str]], cwds: list[Path], envs: list[dict[str, str]]
                ) -> list[tuple[int, str]]:
    """Start the processes together and wait for all; (exit status, output) of each."""
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for cmd, cwd, env in zip(commands, cwds, envs, strict=True)]
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, out))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        logs = [proc.communicate()[0] for proc in procs]
        pytest.fail(f"the workers did not finish in {WORKER_TIMEOUT_S} s:\n" + "\n".join(
            f"--- worker {i} ---\n{log}" for i, log in enumerate(logs)))
    return results


@pytest.mark.slow
def test_two_workers_train_one_model_and_only_the_chief_writes(
        tiny_prepared: Path, tmp_path: Path, free_ports: Callable[[int], list[int]]) -> None:
    # W&B on (offline, into each node's own folders): only the chief may start a run.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params("multi_worker", True)))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    dirs = [tmp_path / f"node{i}" for i in range(2)]
    for d in dirs:
        d.mkdir()
    cmd = [sys.executable, "-m", "imgclf", "train", "--params", str(tmp_path / "params.yaml"),
           "--data", str(tiny_prepared), "--model", "models/model.keras", "--live", "live"]
    base = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "DVC_ROOT")}
    base.update(PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    envs = [{**base, **tf_config(cluster, "worker", i),
             **{name: str(d / "wandb-home") for name in (
                 "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")}}
            for i, d in enumerate(dirs)]
    started = time.monotonic()
    results = run_workers([cmd, cmd], dirs, envs)
    print(f"two workers: {time.monotonic() - started:.1f} s")
    logs = "\n".join(f"--- worker {i} ---\n{out}" for i, (_, out) in enumerate(results))
    assert [status for status, _ in results] == [0, 0], logs

    digests = []
    for i, (_, out) in enumerate(results):
        lines = DIGEST_LINE.findall(out)
        assert len(lines) == 1, logs
        digest, index, count = lines[0]
        assert (int(index), int(count)) == (i, 2), logs
        digests.append(digest)
        assert "multi_worker strategy, 2 replicas in sync" in out, logs
    assert digests[0] == digests[1], logs  # the workers agreed

    chief, worker = dirs
    assert (chief / "models" / "model.keras").is_file()
    assert (chief / "live" / "metrics.json").is_file()
    rows = (chief / "live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 1  # header + the one epoch
    assert not (worker / "models" / "model.keras").exists()
    assert not (worker / "live").exists()
    assert len(list((chief / "wandb-home" / "wandb").glob("offline-run-*"))) == 1, logs
    assert not (worker / "wandb-home" / "wandb").exists(), logs
    for d in dirs:  # the backups are cleaned up on both
        backups = d / "models" / ".train-backup"
        assert not backups.exists() or not any(backups.iterdir()), logs
    model, _ = load_model(chief / "models" / "model.keras")
    assert distribute.weights_digest(model) == digests[0]

    # Each worker took its half of every global batch: together they made the steps
    # one process makes on whole batches (workers reading the same half would not).
    # That process is mirrored, on one device: it shuffles like the workers do (the
    # default strategy's undistributed dataset draws another, equally seeded, order).
    p = params_from_dict(small_params("mirrored"))
    train.run(p.model, p.train, tiny_prepared, tmp_path / "one" / "m.keras",
              tmp_path / "one" / "live")
    alone = load_model(tmp_path / "one" / "m.keras")[0]
    for a, b in zip(model.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_workers_train_in_step_on_a_multi_file_split(
        tmp_path: Path, image_folder: Any, free_ports: Callable[[int], list[int]]) -> None:
    """With more train shard files than workers (so each reads its own files), both still
    take every step and agree on the weights. Which files each reads is checked in
    tests/training/test_dataset.py (test_multi_worker_training_reads_by_file)."""
    from imgclf.data import split
    from imgclf.data.shards import read_meta
    from imgclf.params import DataParams, SplitParams

    image_folder(tmp_path / "raw", ["a", "b", "c"], per_class=20)
    split.run(DataParams(image_size=16),
              SplitParams(train=0.6, val=0.2, test=0.2, shard_mb=0.004),  # ~5 images a file
              tmp_path / "raw", tmp_path / "prepared")
    assert len(read_meta(tmp_path / "prepared").splits["train"]) >= 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params("multi_worker")))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    dirs = [tmp_path / f"node{i}" for i in range(2)]
    for d in dirs:
        d.mkdir()
    cmd = [sys.executable, "-m", "imgclf", "train", "--params", str(tmp_path / "params.yaml"),
           "--data", str(tmp_path / "prepared"), "--model", "models/model.keras",
           "--live", "live"]
    base = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "DVC_ROOT")}
    base.update(PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    results = run_workers([cmd, cmd], dirs,
                          [{**base, **tf_config(cluster, "worker", i)} for i in range(2)])
    logs = "\n".join(f"--- worker {i} ---\n{out}" for i, (_, out) in enumerate(results))
    assert [status for status, _ in results] == [0, 0], logs
    digests = [DIGEST_LINE.findall(out)[0][0] for _, out in results]
    assert digests[0] == digests[1], logs
    rows = (dirs[0] / "live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 1, logs  # header + the one epoch
