"""``imgclf tune --jobs N``: trials in parallel through DVC's experiment queue.

Trials are asked in batches of N, queued (``dvc exp run --queue``) and run by
``dvc queue start --jobs N``, each in its own temporary copy. The first trial of a new
feature set runs alone, so its features land in DVC's run cache before the rest of its
block restore them from there instead of each computing them. A pruned trial is
stopped with ``dvc queue kill``.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from imgclf.tuning import trial as trials
from imgclf.tuning.space import Space


def run_batches(opts: Any, study: Any, space: Space, layout: trials.Layout,
                outer: tuple[str, ...], budget: Any, show: Any) -> None:
    """Run batches until the budget stops them."""
    from imgclf.tuning.study import _next_is_new, left_in_block

    while True:
        new = _next_is_new(study, space, outer)
        # A new feature set's first trial runs alone; a batch never crosses a block.
        size = 1 if new else min(opts.jobs, left_in_block(study, space, outer))
        if budget.trials is not None:
            size = min(size, budget.trials - budget.done)
        why = budget.why_stop(new, size, opts.jobs)
        if why or size <= 0:
            print(f"tune: stopped before another trial: {why or 'trials run'}")
            return
        run_batch(opts, study, space, layout, outer, budget, show, size)


def run_batch(opts: Any, study: Any, space: Space, layout: trials.Layout,
              outer: tuple[str, ...], budget: Any, show: Any, size: int) -> None:
    """Queue ``size`` trials, run them ``opts.jobs`` at a time, tell the study."""
    from imgclf.tuning.study import ask, values_of

    batch = {}
    for index in range(size):
        t, new = ask(study, space, outer)
        values = {**values_of(t, space), "wandb.group": opts.study}
        name = f"{opts.study}-{t.number}"
        log = opts.folder / "logs" / f"{name}.log"
        show.start(name, new, values, log, index)
        trials.queue(opts.repo, name, values, log)
        batch[name] = (t, new, log)
    start = time.time()
    subprocess.run(trials.dvc("queue", "start", "--jobs", str(opts.jobs)), cwd=opts.repo,
                   capture_output=True, check=False)
    watch(opts, study, layout, budget, show, batch, start)


def watch(opts: Any, study: Any, layout: trials.Layout, budget: Any, show: Any,
          pending: dict[str, tuple[Any, bool, Any]], start: float) -> None:
    """Report the running trials' curves, prune, and tell each trial as it ends."""
    import optuna

    watches: dict[str, trials.Watch] = {}
    reported: dict[str, set[int]] = {name: set() for name in pending}
    while pending:
        time.sleep(trials.POLL_S)
        states = trials.queue_states(opts.repo)
        for name, (t, new, log) in list(pending.items()):
            # Unknown while DVC's status waits on the workers: the copy tells it runs.
            state = states.get(name, "Queued") if states is not None else "Running"
            if state == "Running":
                found = trials.copy_of(opts.repo, name)
                points = []
                if found and (found[0] / "dvc.yaml").is_file():
                    if name not in watches:
                        watches[name] = trials.queued_watch(found[0])
                    points = watches[name].new_points(found[0] / layout.curve)
                for step, value in points:
                    show.epoch(name, step, value)
                    t.report(value, step)
                    reported[name].add(step)
                if points and t.should_prune():
                    subprocess.run(trials.dvc("queue", "kill", name), cwd=opts.repo,
                                   capture_output=True, check=False)
                    state = "Pruned"
            if state in ("Queued", "Running"):
                continue
            seconds = time.time() - start
            value, curve = (trials.queue_result(opts.repo, name, layout) if state == "Success"
                            else (None, []))
            for step, epoch_value in curve:  # the epochs it ran between two looks
                if step not in reported[name]:
                    t.report(epoch_value, step)
            kind = {"Success": "complete", "Pruned": "pruned"}.get(state, "failed")
            tstate = {"complete": optuna.trial.TrialState.COMPLETE,
                      "pruned": optuna.trial.TrialState.PRUNED}.get(kind,
                                                                    optuna.trial.TrialState.FAIL)
            if kind == "complete" and value is None:
                kind, tstate = "failed", optuna.trial.TrialState.FAIL
            t.set_user_attr("seconds", round(seconds, 1))
            t.set_user_attr("new_features", new)
            study.tell(t, value if kind == "complete" else None, state=tstate)
            outcome = trials.Outcome(kind, value, seconds, log)
            budget.record(new, outcome)
            show.end(name, outcome)
            del pending[name]
