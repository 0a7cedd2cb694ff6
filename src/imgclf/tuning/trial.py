"""One trial of ``imgclf tune``: a ``dvc exp run`` up to the train stage, watched.

The experiment runs the pipeline's own stages up to ``train`` (so a trial never scores
the test split nor exports), with the trial's params as ``-S`` flags. While it runs,
the train stage's DVCLive val-accuracy curve (one line per epoch) is read as it grows
and handed to the pruner; a pruned trial's DVC process is interrupted, and DVC keeps
no killed run, so the study alone records it. The curve is read only once DVC's log
of the trial says the train stage is running, only if the file is newer than that, and
only whole lines of it: DVC restores the committed curve (the baseline's, git-tracked)
when it sets the experiment up, and that must never be taken for this trial's.

With ``--jobs`` above 1 the trials go through DVC's queue: each runs in its own
temporary copy under ``.dvc/tmp/exps/``, found by DVC's executor info.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imgclf.recipe import hydra_value

POLL_S = 2.0  # how often a running trial's curve is read
STOP_GRACE_S = 30.0  # after SIGINT, how long DVC may take to clean up before SIGKILL
TARGET = "train"  # the last stage a trial runs (val only: no evaluate, no export)
# Trials leave W&B's model and dataset uploads out: a trial's model is thrown away.
TRIAL_FLAGS = {"wandb.log_model": False, "wandb.log_manifest": False}


def dvc(*args: str) -> list[str]:
    """The command line of ``dvc ARGS`` with this interpreter's DVC."""
    return [sys.executable, "-m", "dvc", *args]


@dataclass(frozen=True)
class Layout:
    """Where in a project the train stage writes what a trial is judged by."""

    curve: str  # the DVCLive val accuracy .tsv (step, accuracy per epoch)
    summary: str  # the DVCLive metrics.json of the last epoch

    @classmethod
    def of(cls, repo: Path) -> Layout:
        """Read from dvc.yaml: the train stage's metrics file and the plotted val curve."""
        spec = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))
        train = spec["stages"][TARGET]
        first = train["metrics"][0]  # "file" or {"file": {"cache": false}}
        summary = next(iter(first)) if isinstance(first, dict) else first
        curves = [y for plot in spec.get("plots", []) if isinstance(plot, dict)
                  for body in plot.values() if isinstance(body, dict)
                  for y in (body.get("y") or {}) if y.endswith("val/accuracy.tsv")]
        if not curves:
            raise ValueError("dvc.yaml: no plot of a val/accuracy.tsv curve for the pruner")
        return cls(curves[0], summary)


def dvc_float(value: float) -> float:
    """``value``, or the float next to it when its shortest form has no ``.`` (``2e-05``).

    DVC writes a ``-S`` float into params.yaml in that shortest form, and YAML 1.1 (which
    the stages read) takes ``2e-05`` for a string; the next float's form has a dot."""
    text = repr(value)
    if "e" in text and "." not in text:
        return math.nextafter(value, math.inf)
    return value


def set_flags(values: dict[str, Any]) -> list[str]:
    """``-S key=value`` for each param."""
    flags: list[str] = []
    for key, value in values.items():
        if isinstance(value, float):
            value = dvc_float(value)
        flags += ["-S", f"{key}={hydra_value(key, value)}"]
    return flags


TRAIN_STARTED = f"Running stage '{TARGET}'"  # DVC's log line as the stage starts


def train_started(log: Path) -> bool:
    """Whether DVC's output ``log`` says the train stage has started."""
    try:
        return TRAIN_STARTED in log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False


class Watch:
    """A trial's val curve as it grows: new (step, accuracy) pairs since the last look."""

    def __init__(self, log: Path | None, since: float | None = None) -> None:
        """``log``: DVC's output, read for the train stage's start (which then sets
        ``since``); or no log and a fixed ``since``."""
        self.log, self.seen = log, 0
        self.since: float | None = since

    def new_points(self, curve: Path) -> list[tuple[int, float]]:
        if self.since is None:
            if self.log is None or not train_started(self.log):
                return []
            self.since = time.time() - POLL_S  # the line appeared within the last poll
        points = read_curve(curve, self.since)
        fresh, self.seen = points[self.seen:], max(self.seen, len(points))
        return fresh


def read_curve(path: Path, since: float) -> list[tuple[int, float]]:
    """``[(step, val accuracy), ...]`` from a DVCLive .tsv newer than ``since``; whole
    lines only."""
    try:
        if path.stat().st_mtime < since:
            return []
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    return parse_curve(text)


def parse_curve(text: str) -> list[tuple[int, float]]:
    """``[(step, val accuracy), ...]`` of a DVCLive .tsv's text; whole lines only."""
    lines = text.split("\n")[:-1]  # the last piece has no newline yet (or is empty)
    if not lines:
        return []
    header = lines[0].split("\t")
    out = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        try:
            out.append((int(row["step"]), float(row["accuracy"])))
        except (KeyError, ValueError):
            continue
    return out


def val_accuracy(summary: dict[str, Any]) -> float | None:
    """The val accuracy of a DVCLive metrics.json (``{"val": {"accuracy": ...}}``)."""
    value = (summary.get("val") or {}).get("accuracy")
    return float(value) if isinstance(value, int | float) else None


@dataclass
class Outcome:
    """How a trial ended: ``state`` is complete, pruned or failed."""

    state: str
    value: float | None  # val accuracy (the last reported one, for a pruned trial)
    seconds: float
    log: Path


Report = Callable[[int, float], bool]  # (step, val accuracy) -> prune now?


def run_in_workspace(repo: Path, name: str, values: dict[str, Any], layout: Layout,
                     log: Path, report: Report) -> Outcome:
    """Run the trial as ``dvc exp run -n NAME`` in the workspace, reporting its curve."""
    start = time.time()
    cmd = dvc("exp", "run", "-n", name, *set_flags({**values, **TRIAL_FLAGS}), TARGET)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=repo, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: stopped as one
        try:
            last = _follow(proc, Watch(log), repo / layout.curve, report)
        except BaseException:  # Ctrl-C or SIGTERM of the tune: the trial stops with it
            stop(proc)
            raise
        if proc.poll() is None:  # pruned
            stop(proc)
            return Outcome("pruned", last, time.time() - start, log)
    if proc.returncode != 0:
        return Outcome("failed", None, time.time() - start, log)
    summary = json.loads((repo / layout.summary).read_text(encoding="utf-8"))
    return Outcome("complete", val_accuracy(summary), time.time() - start, log)


def _follow(proc: subprocess.Popen, watch: Watch, curve: Path, report: Report) -> float | None:
    """Report each new epoch until the trial ends or the pruner says stop; the last
    val accuracy reported."""
    last = None
    while proc.poll() is None:
        time.sleep(POLL_S)
        pruned = False
        for step, value in watch.new_points(curve):
            last = value
            pruned = report(step, value) or pruned
        if pruned:
            return last
    # The epochs written since the last look: the pruner compares later trials with them.
    for step, value in watch.new_points(curve):
        last = value
        report(step, value)
    return last


def stop(proc: subprocess.Popen) -> None:
    """Interrupt DVC (Ctrl-C: it stops the stage and cleans up), then kill if it hangs."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- the DVC queue (--jobs N) ----------------------------------------------------------


def queue(repo: Path, name: str, values: dict[str, Any], log: Path) -> None:
    """Put the trial into DVC's experiment queue (``dvc exp run --queue``)."""
    cmd = dvc("exp", "run", "--queue", "-n", name, *set_flags({**values, **TRIAL_FLAGS}),
              TARGET)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        subprocess.run(cmd, cwd=repo, stdout=out, stderr=subprocess.STDOUT, check=True)


STATUS_TIMEOUT_S = 10.0  # `dvc queue status` can wait on the running workers' locks


def queue_states(repo: Path) -> dict[str, str] | None:
    """``{experiment name: Queued | Running | Success | Failed ...}`` of DVC's queue, or
    None when DVC did not answer in time."""
    try:
        text = subprocess.run(dvc("queue", "status"), cwd=repo, capture_output=True,
                              text=True, check=False, timeout=STATUS_TIMEOUT_S).stdout
    except subprocess.TimeoutExpired:
        return None
    states = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] != "Task":
            states[parts[1]] = parts[-1]
    return states


CHECKOUT_SLACK_S = 3.0  # a curve this much newer than the copy's checkout is the trial's


def queued_watch(copy: Path) -> Watch:
    """The watch of a queued trial's curve in its copy ``copy``.

    The copy is checked out with the baseline's committed curve in it, and DVC writes
    the executor's log in blocks, so the log cannot tell when train starts: a curve
    counts once it is newer than the checkout (the copy's dvc.yaml) by a few seconds;
    DVCLive's first line comes long after (TensorFlow's import alone takes longer)."""
    return Watch(None, (copy / "dvc.yaml").stat().st_mtime + CHECKOUT_SLACK_S)


def copy_of(repo: Path, name: str) -> tuple[Path, Path] | None:
    """The temporary workspace of the queued experiment ``name`` while it runs, and its
    DVC log: DVC's executor info (``.dvc/tmp/exps/run/<rev>/<rev>.run``, JSON) names
    the experiment and its folder; ``<rev>.out`` beside it is its output."""
    for info_file in (repo / ".dvc" / "tmp" / "exps" / "run").glob("*/*.run"):
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("name") == name and info.get("root_dir"):
            return Path(info["root_dir"]), info_file.with_suffix(".out")
    return None


def queue_result(repo: Path, name: str, layout: Layout
                 ) -> tuple[float | None, list[tuple[int, float]]]:
    """A finished queued experiment's val accuracy (``dvc exp show --json``) and its
    whole val curve, as committed to the experiment (the curve is git-tracked).

    A short trial can end between two looks at its running copy, and the copy goes
    with it; the pruner compares a running trial with the finished ones' curves, so
    each finished trial's curve is read back from its commit."""
    text = subprocess.run(dvc("exp", "show", "--json"), cwd=repo, capture_output=True,
                          text=True, check=False).stdout
    try:
        shown = json.loads(text)
    except json.JSONDecodeError:
        return None, []
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == name:
                    metrics = (rev.get("data") or {}).get("metrics") or {}
                    data = (metrics.get(layout.summary) or {}).get("data") or {}
                    curve = subprocess.run(["git", "show", f"{rev.get('rev')}:{layout.curve}"],
                                           cwd=repo, capture_output=True, text=True,
                                           check=False).stdout
                    return val_accuracy(data), parse_curve(curve)
    return None, []
