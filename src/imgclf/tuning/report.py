"""What ``imgclf tune`` prints at the end, and what ``--apply`` writes into params.yaml."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

from imgclf import fsutil
from imgclf.params import load_params, merge, params_from_dict, read_yaml
from imgclf.recipe import hydra_value
from imgclf.tuning.space import nested


def table(study: Any, name: str) -> str:
    """Every trial of the study: number, state, val accuracy, seconds, its own params.

    Pruned and failed trials are listed too: DVC keeps no killed run, so this (and the
    study's journal) is their only record."""
    width = len(f"{name}-{len(study.trials)}") + 2
    rows = [f"tune: study {name}: {_trials(len(study.trials))} "
            f"({_count(study, 'COMPLETE')} complete, {_count(study, 'PRUNED')} pruned, "
            f"{_count(study, 'FAIL')} failed)",
            f"  {'trial':<{width}}{'state':<10}{'val acc':>8}{'seconds':>9}  params drawn"]
    for t in study.trials:
        last = _last(t)
        # Optuna gives a pruned trial its last reported value: shown apart, in brackets.
        value = (f"({last:.4f})" if t.state.name == "PRUNED" and last is not None
                 else f"{t.value:.4f}" if t.value is not None else "-")
        seconds = t.user_attrs.get("seconds", "-")
        drawn = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        rows.append(f"  {f'{name}-{t.number}':<{width}}{t.state.name.lower():<10}"
                    f"{value:>8}{seconds!s:>9}  {drawn}")
    rows.append("  (pruned: the last val accuracy reported before it was stopped, in brackets)")
    rows.append(costs(study))
    return "\n".join(rows)


def costs(study: Any) -> str:
    """The mean seconds of a trial that computed its feature set and of one that reused
    the cached one (complete trials only: a pruned one stopped early)."""
    parts = []
    for new, what in ((True, "computing its features"), (False, "reusing cached features")):
        took = [t.user_attrs["seconds"] for t in study.trials
                if t.state.name == "COMPLETE" and "seconds" in t.user_attrs
                and bool(t.user_attrs.get("new_features")) == new]
        if took:
            parts.append(f"{sum(took) / len(took):.0f} s {what} ({_trials(len(took))})")
    return "tune: cost per trial: " + ("; ".join(parts) or "-")


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _count(study: Any, state: str) -> int:
    return sum(1 for t in study.trials if t.state.name == state)


def _last(t: Any) -> float | None:
    steps = t.intermediate_values
    return steps[max(steps)] if steps else None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best(study: Any) -> dict[str, Any] | None:
    """The best completed trial: its number, val accuracy and every param it set."""
    completed = [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    if not completed:
        return None
    b = max(completed, key=lambda t: (t.value, -t.number))
    return {"number": b.number, "value": b.value, "values": b.user_attrs["values"]}


def best_lines(found: dict[str, Any], opts: Any) -> str:
    """The best trial as -S flags, and what to run next."""
    flags = " ".join(f"-S {k}={hydra_value(k, v)}" for k, v in found["values"].items())
    return "\n".join([
        f"tune: best trial {opts.study}-{found['number']}: val accuracy {found['value']:.4f}",
        f"  dvc exp run {flags}",
        f"tune: imgclf tune --study {opts.study} --apply writes them into {opts.params}; "
        "then dvc repro scores the test split for this model alone (trials never did)",
        "tune: dvc exp show lists the completed trials (their metrics/eval.json is the "
        "baseline's: trials stop after train)"])


def _float_with_a_dot(representer: Any, value: float) -> Any:
    text = repr(value)
    if "e" in text and "." not in text:
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def write_params(path: Path, values: dict[str, Any]) -> None:
    """Set ``values`` (dotted keys) in the params file, keeping its comments and order;
    the result is validated before it replaces the file."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, order and layout stay
    yaml.preserve_quotes = True
    # ruamel writes 2e-05 without a dot, which YAML 1.1 (the stages' loader) reads as a
    # string: every float goes out in a form with one.
    yaml.representer.add_representer(float, _float_with_a_dot)
    with path.open(encoding="utf-8") as f:
        doc = yaml.load(f)
    for key, value in values.items():
        *parents, last = key.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    buffer = StringIO()
    yaml.dump(doc, buffer)
    raw = read_yaml(path)
    params_from_dict(merge(raw if isinstance(raw, dict) else {}, nested(values)),
                     source=f"{path} with the best trial's params")
    fsutil.write_text(path, buffer.getvalue())
    load_params(path)  # as a stage will read it
