"""Issue 23's whole-pipeline rows, on the real photos, in clones of the project.

    python bench/experiments.py NEW_CLONE [--old OLD_CLONE] [--peer tutorial_transfer.py]
        [--out rows.json]

Each clone is a separate git clone (its own .git, so DVC's experiment refs stay in it)
of the code to measure, with an empty DVC cache; ``$IMGCLF_DATA_MIRROR`` and
``$KERAS_HOME`` feed its download and pretrained stages. In one run, one after another:

1. ``dvc repro`` + ``dvc checkout --relink`` (what ``make repro`` runs) in NEW_CLONE, each
   stage's seconds read off the time its "Running stage" line appeared;
2. there, ``dvc exp run -S train.learning_rate=0.0008`` (a head-only experiment);
3. then ``dvc exp run -S train.fine_tune.epochs=0 -S train.learning_rate=0.0008``
   (frozen only);
4. ``dvc repro`` in OLD_CLONE (e.g. the pre-features commit 4126fb5);
5. the peer script on the photos, stopped at ``--peer-factor`` times step 1's wall time,
   its per-epoch val accuracy and seconds kept.

Every step's figures (wall seconds, per-stage seconds, test accuracy) are written to
``--out`` as soon as the step ends, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STAGE_LINE = "Running stage '"


def _env(clone: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(clone / "src")  # the clone's own code, not the venv's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("WANDB_MODE", "offline")
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@localhost",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@localhost")
    return env


def timed(cmd: list[str], cwd: Path, log: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, each dvc stage's seconds, and its output lines with
    their times (``log`` gets them too)."""
    t0, cpu0 = time.perf_counter(), _children_cpu()
    stamps: list[tuple[float, str]] = []
    with open(log, "a", encoding="utf-8") as sink:
        sink.write(f"\n$ {' '.join(cmd)}  (in {cwd})\n")
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(cwd), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - t0
            stamps.append((now, line.rstrip()))
            sink.write(f"[{now:7.1f}] {line}")
            sink.flush()
            if timeout is not None and now > timeout:
                proc.kill()
                break
        code = proc.wait()
    wall = time.perf_counter() - t0
    starts = [(t, line.split(STAGE_LINE)[1].split("'")[0]) for t, line in stamps
              if STAGE_LINE in line]
    ends = [t for t, _ in starts[1:]] + [wall] if starts else []
    stages = {name: round(end - t, 1) for (t, name), end in zip(starts, ends, strict=True)}
    # CPU seconds of the command's process tree: steadier than wall time on a machine
    # that others load (what one run waited for the cores does not count).
    return {"cmd": " ".join(cmd), "seconds": round(wall, 1), "rc": code, "stages": stages,
            "cpu_s": round(_children_cpu() - cpu0, 1), "lines": [line for _, line in stamps]}


def _children_cpu() -> float:
    """User + system seconds of this process's waited-for descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _accuracy(clone: Path) -> float | None:
    path = clone / "metrics" / "eval.json"
    if not path.is_file():
        return None
    return float(json.loads(path.read_text(encoding="utf-8"))["test"]["accuracy"])


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def _step(rows: dict[str, Any], name: str, clone: Path, cmd: list[str], out: Path,
          log: Path) -> dict[str, Any]:
    load = os.getloadavg()[0]
    row = timed(cmd, clone, log)
    row.pop("lines")
    row.update(load_at_start=round(load, 1), test_accuracy=_accuracy(clone))
    rows[name] = row
    out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"{name}: {row['seconds']} s, stages {row['stages']}, "
          f"test accuracy {row['test_accuracy']}, rc {row['rc']}", flush=True)
    return row


def _peer(rows: dict[str, Any], peer: Path, limit: float, out: Path, log: Path) -> None:
    data = os.environ["IMGCLF_DATA_MIRROR"]
    row = timed([sys.executable, str(peer), data, "--head-epochs", "10", "--fine-epochs", "10"],
                Path.cwd(), log, timeout=limit)
    epochs = []
    for line in row.pop("lines"):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                epochs.append(json.loads(line))
    rows["peer"] = {"seconds": row["seconds"], "limit_s": round(limit, 1), "epochs": epochs}
    out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"peer: {epochs}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new", type=Path)
    p.add_argument("--old", type=Path)
    p.add_argument("--peer", type=Path)
    p.add_argument("--peer-factor", type=float, default=2.2)
    p.add_argument("--out", type=Path, default=Path("experiments.json"))
    p.add_argument("--skip", default="", help="comma-separated steps to leave out")
    p.add_argument("--force", action="store_true",
                   help="step 1 as dvc repro --force (a clone that ran before)")
    a = p.parse_args()
    rows: dict[str, Any] = json.loads(a.out.read_text()) if a.out.is_file() else {}
    log = a.out.with_suffix(".log")
    skip = set(filter(None, a.skip.split(",")))
    if "repro" not in skip:
        _step(rows, "repro", a.new, _dvc("repro", *(["--force"] if a.force else [])), a.out,
              log)
        timed(_dvc("checkout", "--relink", "--quiet"), a.new, log)
    if "head" not in skip:
        _step(rows, "head_only", a.new, _dvc("exp", "run", "-S", "train.learning_rate=0.0008"),
              a.out, log)
    if "frozen" not in skip:
        _step(rows, "frozen_only", a.new, _dvc("exp", "run", "-S", "train.fine_tune.epochs=0",
                                               "-S", "train.learning_rate=0.0008"), a.out, log)
    if a.old is not None and "old" not in skip:
        _step(rows, "old_repro", a.old, _dvc("repro"), a.out, log)
    if a.peer is not None and "peer" not in skip:
        _peer(rows, a.peer, a.peer_factor * rows["repro"]["seconds"], a.out, log)


if __name__ == "__main__":
    main()
