"""The study of ``imgclf tune``: ask, run as a DVC experiment, tell; within a budget.

- Storage: an Optuna journal file under ``tune/<study>/`` (git-ignored), so a second
  ``imgclf tune`` continues the study (numbering, the sampler's history); trials a
  killed run left running are marked failed.
- Sampler: TPE, its random start-up trials sized to what the budget buys (a quarter
  of the trials expected, 2 to 10; TPE's own 10 are more than a short budget has).
- Pruner: the median rule (or successive halving) on each epoch's val accuracy.
- The outer loop: the params that change the feature set (``space.is_outer``) are
  drawn once per block of ``trials_per_features`` trials and the other trials of the
  block are asked with them fixed (``enqueue_trial``), so each feature set is computed
  once and the rest reuse the features stage, which DVC caches.
- The budget: ``--trials`` and ``--time``; a trial is started only while the time left
  holds the longest trial of its kind (new features or reused ones) seen so far, so
  the budget is never overrun by more than one trial.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imgclf import fsutil
from imgclf.errors import UserError
from imgclf.params import read_yaml
from imgclf.tuning import trial as trials
from imgclf.tuning.space import Space, load_space

TUNE_DIR = "tune"  # under the project, git-ignored: the studies' storage, logs and plots
OUTER_STAGES = ("pretrained", "split", "features")  # their params change the features
MIN_STARTUP, MAX_STARTUP = 2, 10
MAX_FAILED_IN_A_ROW = 3  # then something is wrong with the project, not the params


@dataclass(frozen=True)
class Options:
    """What ``imgclf tune`` was asked for."""

    repo: Path
    space: Path
    study: str = "tune"
    trials: int | None = None  # new trials this run; None: as many as the time allows
    seconds: float | None = None  # the time budget of this run
    jobs: int = 1
    pruner: str = "median"  # or "halving"
    seed: int = 0
    params: str = "params.yaml"
    apply: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}", self.study):
            raise UserError(f"--study {self.study!r}: use letters, digits, - and _ (it names "
                            "the experiments, which are git refs)")
        if self.trials is None and self.seconds is None and not self.apply:
            raise UserError("give a budget: --trials N, --time DURATION (e.g. 20m) or both")
        if (self.trials is not None and self.trials < 1) or self.jobs < 1:
            raise UserError("--trials and --jobs must be 1 or more")

    @property
    def folder(self) -> Path:
        return self.repo / TUNE_DIR / self.study


@dataclass
class Budget:
    """The trials and time left to this run, and what the trials so far cost."""

    trials: int | None
    seconds: float | None
    start: float = field(default_factory=time.time)
    done: int = 0
    cost: dict[bool, float] = field(default_factory=dict)  # new features? -> longest seconds
    failed_in_a_row: int = 0
    last_log: Path | None = None

    def left(self) -> float | None:
        return None if self.seconds is None else self.seconds - (time.time() - self.start)

    def estimate(self, new_features: bool) -> float:
        return self.cost.get(new_features, max(self.cost.values(), default=0.0))

    def why_stop(self, new_features: bool, batch: int = 1, jobs: int = 1) -> str | None:
        """Why no further trial starts, or None."""
        if self.trials is not None and self.done >= self.trials:
            return f"{self.trials} trials run"
        if self.failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            return (f"{self.failed_in_a_row} trials in a row failed; the last one's log: "
                    f"{self.last_log}")
        left = self.left()
        need = self.estimate(new_features) * math.ceil(batch / jobs)
        if left is not None and (left <= 0 or need > left):
            return (f"the time budget: {_clock(max(left, 0))} left, the next trial takes "
                    f"~{_clock(need)}")
        return None

    def record(self, new_features: bool, outcome: trials.Outcome) -> None:
        self.done += 1
        self.cost[new_features] = max(self.cost.get(new_features, 0.0), outcome.seconds)
        self.failed_in_a_row = self.failed_in_a_row + 1 if outcome.state == "failed" else 0
        self.last_log = outcome.log


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def outer_keys(repo: Path) -> frozenset[str]:
    """The params (keys or sections) listed by the stages before train that make the
    features: pretrained, split and features, read from dvc.yaml."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    keys: set[str] = set()
    for name in OUTER_STAGES:
        for entry in stages.get(name, {}).get("params", []):
            keys.update(entry if isinstance(entry, dict) else [entry])
    return frozenset(str(k) for k in keys)


def storage_path(opts: Options) -> Path:
    return opts.folder / "study.journal"


def open_study(opts: Options, expected: int) -> Any:
    """The study in ``tune/<study>/study.journal``, created or continued."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines instead
    opts.folder.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(storage_path(opts))))
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
              if opts.pruner == "halving"
              else optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    study = optuna.create_study(study_name=opts.study, storage=storage, direction="maximize",
                                pruner=pruner, load_if_exists=True)
    for old in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # Left running by a tune that was killed: DVC kept no run of it.
        storage.set_trial_state_values(old._trial_id, optuna.trial.TrialState.FAIL)
    set_sampler(study, opts.seed, expected)
    return study


def start_from_baseline(study: Any, space: Space, params: Path) -> None:
    """Make a new study's first trial params.yaml's own values (those inside the space):
    the defaults are then one of the points TPE compares, and the best trial found is
    at least as good on val as they are."""
    if study.trials:
        return
    raw = read_yaml(params)
    start = space.baseline(raw if isinstance(raw, dict) else {})
    if start:
        study.enqueue_trial(start, user_attrs={"baseline": True}, skip_if_exists=True)
        rest = [d.key for d in space.dims if d.key not in start]
        print(f"tune: trial 0 is {params.name}'s own values of {', '.join(start)}"
              + (f"; TPE draws {', '.join(rest)} (outside the space there)" if rest else ""))


def startup_trials(expected: int) -> int:
    """TPE's random start-up trials for a run expected to hold ``expected`` trials."""
    return max(MIN_STARTUP, min(MAX_STARTUP, expected // 4))


def set_sampler(study: Any, seed: int, expected: int) -> None:
    import optuna

    # Seeded by the trials so far: a continued study does not redraw the same points.
    study.sampler = optuna.samplers.TPESampler(
        n_startup_trials=startup_trials(expected + len(study.trials)),
        seed=seed + len(study.trials), multivariate=True)


def expected_trials(opts: Options, seconds_per_trial: float | None) -> int:
    """How many trials this run's budget buys (12 a guess before any trial is timed)."""
    by_time = (int(opts.seconds // seconds_per_trial) if opts.seconds and seconds_per_trial
               else None)
    counts = [n for n in (opts.trials, by_time) if n is not None]
    return min(counts) if counts else 12


def check_ignored(repo: Path) -> None:
    """The study's folder must be git-ignored: each experiment would commit it otherwise."""
    probe = subprocess.run(["git", "check-ignore", "-q", f"{TUNE_DIR}/x"], cwd=repo,
                           check=False)
    if probe.returncode != 0:
        raise UserError(f"{repo / TUNE_DIR}: not git-ignored; add /{TUNE_DIR}/ to .gitignore "
                        "(every experiment would commit the study otherwise)")


def ask(study: Any, space: Space, outer: tuple[str, ...]) -> tuple[Any, bool]:
    """The next trial, and whether it starts a new feature set (a new block).

    Within a block the outer params of the block's first trial are enqueued, so TPE
    draws only the others."""
    done = [t for t in study.get_trials(deepcopy=False) if "block" in t.user_attrs]
    new = _next_is_new(study, space, outer)
    if done and not new and outer:
        block = done[-1].user_attrs["block"]
        first = next(t for t in done if t.user_attrs["block"] == block)
        study.enqueue_trial({k: v for k, v in first.params.items() if k in outer},
                            skip_if_exists=False)
    t = study.ask()
    t.set_user_attr("block", t.number if new or not done else done[-1].user_attrs["block"])
    return t, new


def values_of(t: Any, space: Space) -> dict[str, Any]:
    values = space.suggest(t)
    t.set_user_attr("values", values)
    return values


class Progress:
    """The progress lines: the trial counter, the best val accuracy so far, time left."""

    def __init__(self, study: Any, budget: Budget) -> None:
        self.study, self.budget = study, budget

    def best(self) -> str:
        try:
            b = self.study.best_trial
        except ValueError:
            return "best val -"
        return f"best val {b.value:.4f} (#{b.number})"

    def head(self, queued: int = 0) -> str:
        total = f"/{self.budget.trials}" if self.budget.trials is not None else ""
        left = self.budget.left()
        when = f" | {_clock(max(left, 0))} left" if left is not None else ""
        return f"[{self.budget.done + queued + 1}{total}] {self.best()}{when}"

    def start(self, name: str, new: bool, values: dict[str, Any], log: Path,
              queued: int = 0) -> None:
        """The line of a trial starting (``queued``: trials of its batch before it)."""
        kind = "computes its feature set" if new else "reuses the feature set"
        shown = " ".join(f"{k}={trials.hydra_value(k, v)}" for k, v in values.items())
        print(f"tune: {self.head(queued)} | {name} {kind}: {shown}\n      log: {log}",
              flush=True)

    def epoch(self, name: str, step: int, value: float) -> None:
        print(f"tune:   {name} epoch {step + 1}: val accuracy {value:.4f}", flush=True)

    def end(self, name: str, outcome: trials.Outcome) -> None:
        value = f" val {outcome.value:.4f}" if outcome.value is not None else ""
        print(f"tune:   {name} {outcome.state}{value} in {_clock(outcome.seconds)}"
              f" | {self.best()}", flush=True)


def run_workspace_trial(opts: Options, study: Any, space: Space, layout: trials.Layout,
                        outer: tuple[str, ...], budget: Budget, show: Progress) -> bool:
    """Ask one trial, run it in the workspace, tell the study; False when the budget
    stops it before it starts."""
    import optuna

    peek_new = _next_is_new(study, space, outer)
    why = budget.why_stop(peek_new)
    if why:
        print(f"tune: stopped before another trial: {why}")
        return False
    t, new = ask(study, space, outer)
    values = values_of(t, space)
    name = f"{opts.study}-{t.number}"
    log = opts.folder / "logs" / f"{name}.log"
    show.start(name, new, values, log)

    def report(step: int, value: float) -> bool:
        show.epoch(name, step, value)
        t.report(value, step)
        return t.should_prune()

    outcome = trials.run_in_workspace(opts.repo, name, {**values, "wandb.group": opts.study},
                                      layout, log, report)
    t.set_user_attr("seconds", round(outcome.seconds, 1))
    t.set_user_attr("new_features", new)
    state = {"complete": optuna.trial.TrialState.COMPLETE,
             "pruned": optuna.trial.TrialState.PRUNED}.get(outcome.state,
                                                           optuna.trial.TrialState.FAIL)
    study.tell(t, outcome.value if state == optuna.trial.TrialState.COMPLETE else None,
               state=state)
    budget.record(new, outcome)
    show.end(name, outcome)
    return True


def left_in_block(study: Any, space: Space, outer: tuple[str, ...]) -> int:
    """How many trials the current block (feature set) still holds; 0 when the next
    trial starts a new one. Without outer params there is one endless block."""
    done = [t for t in study.get_trials(deepcopy=False) if "block" in t.user_attrs]
    if not done:
        return 0
    if not outer:
        return 1 << 30
    block = done[-1].user_attrs["block"]
    return max(0, space.per_features - sum(1 for t in done if t.user_attrs["block"] == block))


def _next_is_new(study: Any, space: Space, outer: tuple[str, ...]) -> bool:
    """Whether the next trial starts a block (draws the outer params): the study's first
    trial, or the one after a full block."""
    done = [t for t in study.get_trials(deepcopy=False) if "block" in t.user_attrs]
    if not done or not outer:
        return not done
    block = done[-1].user_attrs["block"]
    return sum(1 for t in done if t.user_attrs["block"] == block) >= space.per_features


def run(opts: Options) -> int:
    """Run the study within the budget, then print the trials, the best and the plots."""
    repo = opts.repo
    check_ignored(repo)
    from imgclf.models.pretrained import keras_cache

    space = load_space(opts.space, repo / opts.params,
                       (keras_cache(), repo / "data" / "pretrained"))
    for dropped in space.dropped:
        print(f"tune: backbone {dropped} left out: its ImageNet weights are not present")
    outer = space.outer(outer_keys(repo))
    layout = trials.Layout.of(repo)
    study = open_study(opts, expected_trials(opts, None))
    start_from_baseline(study, space, repo / opts.params)
    budget = Budget(opts.trials, opts.seconds)
    for old in study.trials:  # a continued study: the cost of its trials so far
        if "seconds" in old.user_attrs:
            new = bool(old.user_attrs.get("new_features"))
            budget.cost[new] = max(budget.cost.get(new, 0.0), old.user_attrs["seconds"])
    before = sum(1 for t in study.trials if t.state.name != "WAITING")
    state = f"continued, {before} trial{'s' * (before != 1)} so far" if before else "new"
    print(f"tune: study {opts.study} ({state}), "
          f"storage {storage_path(opts).relative_to(repo)}; outer loop over "
          f"{', '.join(outer) or 'nothing (every trial reuses one feature set)'}")
    saved = _tracked_texts(repo, opts.params)
    # A SIGTERM ends the tune as Ctrl-C does: the running trial is stopped, the files
    # restored (the CLI reports the interruption).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if opts.jobs > 1:
            from imgclf.tuning import queued

            queued.run_batches(opts, study, space, layout, outer, budget, Progress(study, budget))
        else:
            while run_workspace_trial(opts, study, space, layout, outer, budget,
                                      Progress(study, budget)):
                if budget.done == 1 and opts.trials is None:
                    set_sampler(study, opts.seed, expected_trials(opts, budget.estimate(False)))
    finally:
        _restore(repo, saved)
    return finish(opts, study)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _tracked_texts(repo: Path, params: str) -> dict[Path, str]:
    """params.yaml and dvc.lock as they were: each workspace trial rewrites them."""
    return {p: p.read_text(encoding="utf-8") for p in (repo / params, repo / "dvc.lock")
            if p.is_file()}


def _restore(repo: Path, saved: dict[Path, str]) -> None:
    for path, text in saved.items():
        if path.read_text(encoding="utf-8") != text:
            fsutil.write_text(path, text)


def finish(opts: Options, study: Any) -> int:
    """Print the trials, the best trial's flags, and draw the plots."""
    from imgclf.tuning import plots, report

    print(report.table(study, opts.study))
    best = report.best(study)
    if best is None:
        print("tune: no trial completed; see the logs under "
              f"{(opts.folder / 'logs').relative_to(opts.repo)}")
        return 1
    fsutil.write_json(opts.folder / "best.json", best)
    print(report.best_lines(best, opts))
    for path in plots.draw(study, opts.folder):
        print(f"tune: plot {path.relative_to(opts.repo)}")
    return 0


def apply_best(opts: Options) -> int:
    """``imgclf tune --apply``: write the best trial's params into params.yaml."""
    from imgclf.tuning import report

    best_file = opts.folder / "best.json"
    if not best_file.is_file():
        raise UserError(f"{best_file}: missing; run imgclf tune --study {opts.study} first")
    best = json.loads(best_file.read_text(encoding="utf-8"))
    report.write_params(opts.repo / opts.params, best["values"])
    print(f"tune: {opts.params}: set the params of trial {best['number']} (val accuracy "
          f"{best['value']:.4f}):")
    for key, value in best["values"].items():
        print(f"  {key}: {value}")
    print("tune: now `dvc repro` trains this model (the train stage may come straight from "
          "DVC's run cache) and scores the test split for the best trial alone")
    return 0
