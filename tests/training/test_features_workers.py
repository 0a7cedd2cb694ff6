"""The features stage under ``train.strategy: multi_worker``: two real processes on
loopback share the batches and write the files one process writes alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from imgclf.params import params_from_dict

pytestmark = [pytest.mark.slow, pytest.mark.realweights]

# 32 px, 3 classes x 40: 96 train images (3 batches of 32: worker 1 has no batch in the
# second round), 12 val and 12 test (one batch: worker 1 only pads).
PARAMS = {"data": {"image_size": 32}, "split": {"train": 0.8, "val": 0.1, "test": 0.1},
          "model": {"arch": "mobilenet_v2", "alpha": 0.35}, "wandb": {"enabled": False}}



def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_workers_write_the_one_process_files_byte_for_byte(
        tmp_path: Path, image_folder: Callable[..., Path],
        free_ports: Callable[[int], list[int]]) -> None:
    from imgclf.data import split
    from imgclf.models import pretrained
    from imgclf.training import features

    p = params_from_dict(PARAMS)
    image_folder(tmp_path / "raw", ["a", "b", "c"], per_class=40, size=32)
    split.run(p.data, p.split, tmp_path / "raw", tmp_path / "prep")
    pretrained.run(p.model, tmp_path / "weights")
    features.run(p.model, 30, True, tmp_path / "prep", tmp_path / "weights", tmp_path / "alone")

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {**PARAMS, "train": {"strategy": "multi_worker"}}))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    for i in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "imgclf", "features", "--params", "params.yaml",
             "--data", "prep", "--pretrained", "weights", *(["--out", "out1"] if i else [])],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TF_CONFIG": config}))
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    # The chief writes data/features by default; worker 1 its own copy, where told.
    assert "(worker 0 of 2) -> data/features" in outputs[0], outputs[0]
    assert "(worker 1 of 2) -> out1" in outputs[1], outputs[1]
    alone = _files(tmp_path / "alone")
    for folder in ("data/features", "out1"):
        together = _files(tmp_path / folder)
        assert sorted(together) == sorted(alone)
        for name, data in alone.items():
            assert together[name] == data, (folder, name)
