"""Weights & Biases tracking of the train and evaluate stages: optional, and never fatal.

DVC stays the record of the pipeline (``dvc.lock``, ``metrics/``); W&B adds a browsable
history of runs with charts, artifacts and sample images. A stage uses one ``Tracker``:

    tracker = Tracker.start(params, "train")   # or Tracker.disabled("train")
    model.fit(..., callbacks=[..., tracker.callback()])
    tracker.log_artifact("models/model.keras", "model")
    tracker.finish()

Rules, each with its reason:

* The API key is read only from ``WANDB_API_KEY`` in the environment or in ``./.env``:
  params, metrics and ``dvc.lock`` are committed, so the key must never reach them. It
  is handed to W&B in its settings and is never printed, logged or put in the config.
* With a key runs go online; without one they are written offline (under ``wandb/``,
  or ``$WANDB_DIR/wandb/``) and the stage ends by printing the ``wandb sync`` command
  that uploads them later. ``wandb.enabled: false`` or ``WANDB_MODE=disabled`` turn
  W&B off: the tracker is then a no-op and ``wandb`` is not even imported.
* Tracking must never fail or stall the pipeline. Every W&B call goes through
  ``Tracker._call``: any error becomes one warning line on stderr and tracking is off
  for the rest of the stage. A server that does not accept a connection within
  ``run_info.PROBE_TIMEOUT_S`` turns the run into an offline one (with the sync hint) at once;
  ``wandb.init`` is bounded by ``INIT_TIMEOUT_S`` and
  ``run.finish`` by ``FINISH_TIMEOUT_S``; logging calls do not wait for the network.
* Train and evaluate are separate processes (DVC stages), so they are two runs in one
  W&B group, with job types ``train`` and ``evaluate``. The group is the DVC experiment
  (``$DVC_EXP_NAME``, set by ``dvc exp run``), else the git revision (``-dirty`` when
  tracked files other than the pipeline's own outputs differ from it), else ``local``.

The Keras callback (``callback``), the charts and tables (``charts``) and the run's name
and config (``run_info``) are modules of their own beside this one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np

from imgclf import env
from imgclf.params import Params, WandbParams, to_dict
from imgclf.tracking.callback import EpochLogger
from imgclf.tracking.charts import Curves, curve_chart, misclassified_table
from imgclf.tracking.run_info import data_hash, flatten, git_rev, run_group, unreachable

DEFAULT_BASE_URL = "https://api.wandb.ai"
INIT_TIMEOUT_S = 15.0
"""Longest wait for ``wandb.init`` (an unreachable server is given up after this)."""
FINISH_TIMEOUT_S = 120.0
"""Longest wait for the end-of-run upload; data not sent by then stays in the run folder."""

ArtifactKind = Literal["model", "dataset"]

# The default artifact name of each kind.
ARTIFACT_NAMES: dict[str, str] = {"model": "model", "dataset": "split-manifest"}


class Tracker:
    """One W&B run of one stage, or a no-op when tracking is off or W&B has failed.

    Build it with ``Tracker.start`` (or ``Tracker.disabled``); every method is safe to
    call in every state.
    """

    def __init__(self, job_type: str, settings: WandbParams | None = None,
                 secret: str | None = None) -> None:
        self.job_type = job_type
        self._settings = settings
        self._secret = secret  # kept only to scrub it from warning messages
        self._run: Any = None  # a wandb Run while tracking is on

    # --- life cycle --------------------------------------------------------------------

    @classmethod
    def disabled(cls, job_type: str = "stage") -> Tracker:
        """A tracker that does nothing (tests, ``wandb.enabled: false``)."""
        return cls(job_type)

    @classmethod
    def start(cls, params: Params, job_type: str, root: str | os.PathLike[str] = ".",
              environ: Mapping[str, str] | None = None) -> Tracker:
        """Start the W&B run of stage ``job_type``; never raises for a W&B problem.

        ``root`` is the workspace being run (its git revision and ``dvc.lock`` go in the
        config); ``environ`` defaults to ``os.environ``. The ``.env`` file and the
        ``wandb/`` folder are those of ``$DVC_ROOT`` when DVC sets it: a queued
        experiment runs in a temporary copy, which has no ``.env`` and is deleted after.
        """
        if environ is None:
            env.drop_empty()  # W&B reads os.environ itself and refuses WANDB_MODE=""
            environ = os.environ
        env_mode = (env.get("WANDB_MODE", environ) or "").lower()
        if not params.wandb.enabled or env_mode == "disabled":
            return cls.disabled(job_type)
        root = Path(root)
        home = Path(env.get("DVC_ROOT", environ) or root)
        key = env.lookup("WANDB_API_KEY", environ, home / ".env")
        online = bool(key) and env_mode not in ("offline", "dryrun")
        base_url = env.get("WANDB_BASE_URL", environ) or DEFAULT_BASE_URL
        if online and (problem := unreachable(base_url)):
            # Fail over to an offline run at once rather than wait out wandb.init's timeout:
            # nothing is lost, and the stage ends with the command that uploads it.
            print(f"{job_type}: warning: W&B server {problem}; logging offline instead",
                  file=sys.stderr)
            online, key = False, None
        tracker = cls(job_type, params.wandb, secret=key)
        tracker._run = tracker._guarded("start", tracker._init, params, root, environ, key,
                                        online, home)
        return tracker

    def _init(self, params: Params, root: Path, environ: Mapping[str, str], key: str | None,
              online: bool, home: Path) -> Any:
        import wandb  # here, not at the top: a disabled tracker never loads W&B

        assert self._settings is not None
        # Runs are named after the DVC experiment; a sweep (make compare) can put all of
        # its experiments into one group with wandb.group.
        name = run_group(environ, root)
        group = self._settings.group or name
        entity = self._settings.entity or env.lookup("WANDB_ENTITY", environ, home / ".env")
        config = {**to_dict(params), "git_rev": git_rev(root) or "",
                  "data_hash": data_hash(root / "dvc.lock") or ""}
        # W&B prints through a global set up once per process: silence it before the
        # first message (login notes, "git root" warnings). Our own lines stay.
        wandb.setup(wandb.Settings(silent=True))
        settings = wandb.Settings(
            silent=True, console="off",  # keep stdout (and dvc's log) ours
            init_timeout=INIT_TIMEOUT_S, finish_timeout=FINISH_TIMEOUT_S,
            finish_timeout_raises=True,
            **({"api_key": key} if key else {}))
        return wandb.init(
            project=self._settings.project, entity=entity,
            group=group, job_type=self.job_type, name=f"{name}-{self.job_type}",
            config=config, mode="online" if online else "offline",
            dir=env.get("WANDB_DIR", environ) or str(home),
            settings=settings)

    @property
    def active(self) -> bool:
        """Whether a W&B run is being logged to."""
        return self._run is not None

    def finish(self, failed: bool = False) -> None:
        """End the run (marked failed if the stage failed) and shut W&B down.

        An offline run ends with the line that uploads it later: ``wandb sync <dir>``.
        """
        sync_dir = self._call("finish", self._finish, 1 if failed else 0)
        if sync_dir:
            print(f"{self.job_type}: W&B run saved offline; upload it with: "
                  f"wandb sync {_shown_path(sync_dir)}")

    def _finish(self, exit_code: int) -> str | None:
        """Finish the run; return its folder if it still has to be synced."""
        import wandb

        run, self._run = self._run, None
        sync_dir = run.settings.sync_dir if run.offline else None
        run.finish(exit_code=exit_code)
        wandb.teardown()  # stop W&B's service; the next start reads the environment anew
        return sync_dir

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.finish(failed=exc_type is not None)

    # --- logging -----------------------------------------------------------------------

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback logging each epoch's loss and accuracy (train and val)."""
        return EpochLogger(self.log) if self.active else keras.callbacks.Callback()

    def log(self, values: Mapping[str, Any]) -> None:
        """Log one history row (one step) of ``values``."""
        self._call("log", lambda: self._run.log(dict(values)))

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        """Put the final metrics in the run summary, nested keys joined by "/"."""
        self._call("summary", lambda: self._run.summary.update(flatten(metrics)))

    def log_tables(self, prefix: str, tables: Mapping[str, Sequence[Mapping[str, Any]]],
                   columns: Mapping[str, Sequence[str]]) -> None:
        """Log each ``tables[name]`` (rows of ``columns[name]``) as the W&B table
        ``prefix/name`` (the audit's findings)."""
        self._call("tables", self._log_tables, prefix, tables, columns)

    def _log_tables(self, prefix: str, tables: Mapping[str, Sequence[Mapping[str, Any]]],
                    columns: Mapping[str, Sequence[str]]) -> None:
        import wandb

        logged = {f"{prefix}/{name}": wandb.Table(
            columns=list(columns[name]),
            data=[[row.get(c) for c in columns[name]] for row in rows])
            for name, rows in tables.items()}
        self._run.log(logged)

    def log_artifact(self, path: str | os.PathLike[str], kind: ArtifactKind,
                     name: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        """Upload the file ``path`` as an artifact of type ``kind``.

        Skipped when ``wandb.log_model`` (kind "model") or ``wandb.log_manifest`` (kind
        "dataset") is false, so the stage need not know those settings.
        """
        if not self.active:
            return
        assert self._settings is not None
        wanted = self._settings.log_model if kind == "model" else self._settings.log_manifest
        if wanted:
            self._call(f"{kind} artifact", self._log_artifact, Path(path), kind,
                       name or ARTIFACT_NAMES[kind], dict(metadata or {}))

    def _log_artifact(self, path: Path, kind: str, name: str, metadata: dict[str, Any]) -> None:
        import wandb

        artifact = wandb.Artifact(name, type=kind, metadata=metadata)
        artifact.add_file(str(path))
        self._run.log_artifact(artifact)

    def log_test_results(self, images: Any, y_true: np.ndarray, probs: np.ndarray,
                         class_names: list[str], curves: Mapping[str, Curves],
                         mistakes: np.ndarray) -> None:
        """The test split's confusion matrix, ROC and PR charts, and misclassified images.

        ``images[i]`` is the ``(H, W, 3)`` image scored as ``y_true[i]``/``probs[i]``;
        ``curves`` holds the evaluate stage's per-class ``"roc"`` and
        ``"precision_recall"`` points (``{class: [{"fpr": .., "tpr": ..}, ...]}``), and
        ``mistakes`` the indices of the most confident mistakes, worst first. The
        tracker draws what it is handed; it computes no metric of its own.
        """
        self._call("test charts", self._log_test_results, images, np.asarray(y_true),
                   np.asarray(probs), list(class_names), curves, np.asarray(mistakes))

    def _log_test_results(self, images: Any, y_true: np.ndarray, probs: np.ndarray,
                          class_names: list[str], curves: Mapping[str, Curves],
                          mistakes: np.ndarray) -> None:
        import wandb

        assert self._settings is not None
        charts: dict[str, Any] = {
            "test/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=y_true.tolist(), preds=probs.argmax(1).tolist(),
                class_names=class_names, title="Confusion matrix (test)"),
            "test/roc": curve_chart(curves["roc"], "fpr", "tpr", "ROC (test)",
                                     "False positive rate", "True positive rate"),
            "test/precision_recall": curve_chart(
                curves["precision_recall"], "recall", "precision",
                "Precision-recall (test)", "Recall", "Precision"),
        }
        if self._settings.misclassified:
            charts["test/misclassified"] = misclassified_table(
                images, y_true, probs, class_names, mistakes[:self._settings.misclassified])
        self._run.log(charts)

    # --- the guard ---------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` while tracking is on, else None."""
        return self._guarded(what, fn, *args) if self.active else None

    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None: a W&B error turns tracking off with one warning."""
        try:
            return fn(*args)
        except (Exception, SystemExit) as exc:  # W&B must never end the stage
            self._fail(what, exc)
            return None

    def _fail(self, what: str, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        if self._secret:
            detail = detail.replace(self._secret, "***")
        print(f"{self.job_type}: warning: W&B {what} failed, so this stage is not tracked "
              f"in W&B ({detail})", file=sys.stderr)
        self._run = None
        try:  # end whatever W&B started; bounded by finish_timeout
            import wandb

            wandb.teardown(exit_code=1)
        except (Exception, SystemExit):
            pass


def _shown_path(path: str) -> str:
    """``path`` relative to the working folder when inside it (shorter to copy)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
