"""Training on several devices or machines: ``train.strategy`` and the cluster's roles.

``auto`` trains on the one local device, or mirrors across all local GPUs when there
are several; ``mirrored`` always uses ``MirroredStrategy`` (every local GPU, or the
CPU); ``multi_worker`` trains together with other processes, on this machine or
others, with ``MultiWorkerMirroredStrategy``, configured by the standard ``TF_CONFIG``
variable, e.g. for the second of two workers::

    TF_CONFIG='{"cluster": {"worker": ["node0:12345", "node1:12345"]},
                "task": {"type": "worker", "index": 1}}'

Every worker runs the same program on the same data and ends with the same weights;
only the chief (task type ``chief``, else worker 0) writes the outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as keras_tf_trainer

from imgclf.errors import UserError

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
TASK_TYPES = ("chief", "worker")  # in MultiWorkerMirroredStrategy's order of the tasks


@dataclass(frozen=True)
class Task:
    """This process's place among the processes that train together."""

    index: int  # 0 .. count - 1; the chief (if any) first, then the workers
    count: int
    chief: bool  # the one that writes the model, metrics and logs


ALONE = Task(index=0, count=1, chief=True)


def _bad(what: str) -> UserError:
    return UserError(f"TF_CONFIG: {what}; train.strategy multi_worker needs it set to the "
                     f"cluster and this node's task, e.g. {TF_CONFIG_EXAMPLE}")


def read_tf_config(environ: Mapping[str, str] | None = None) -> Task:
    """This process's ``Task`` from ``TF_CONFIG``; a ``UserError`` if it is missing or bad."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        raise _bad("not set")
    try:
        config: Any = json.loads(raw)
    except json.JSONDecodeError:
        raise _bad("not valid JSON") from None
    if not isinstance(config, dict):
        raise _bad("not a JSON object")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not any(cluster.get(t) for t in TASK_TYPES):
        raise _bad("no cluster.worker list of host:port addresses")
    other = sorted(set(cluster) - set(TASK_TYPES))
    if other:
        # Parameter servers and evaluators belong to other strategies than this one.
        raise _bad(f"cluster.{other[0]} is not supported, only chief and worker tasks")
    for name in TASK_TYPES:
        hosts = cluster.get(name, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise _bad(f"cluster.{name} must be a list of host:port addresses")
    if len(cluster.get("chief", [])) > 1:
        raise _bad("cluster.chief lists more than one address")
    if not isinstance(task, dict) or task.get("type") not in TASK_TYPES:
        raise _bad("task.type must be chief or worker")
    kind, index = task["type"], task.get("index", 0)
    hosts = cluster.get(kind, [])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(hosts):
        raise _bad(f"task.index must be 0 .. {len(hosts) - 1} (the {kind} list's positions), "
                   f"got {index!r}")
    n_chief = len(cluster.get("chief", []))
    position = index if kind == "chief" else n_chief + index
    return Task(index=position, count=n_chief + len(cluster.get("worker", [])),
                chief=position == 0)


def current_task(strategy: str, environ: Mapping[str, str] | None = None) -> Task:
    """Where this process stands under ``train.strategy``.

    Only ``multi_worker`` reads ``TF_CONFIG``: with another strategy the process trains
    alone, whatever the environment says, so it is its own chief.
    """
    return read_tf_config(environ) if strategy == "multi_worker" else ALONE


def is_chief(strategy: str = "multi_worker", environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process writes the outputs (model, metrics, logs, W&B run)."""
    return current_task(strategy, environ).chief


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy of ``train.strategy``.

    Call it before any other TensorFlow op: ``MultiWorkerMirroredStrategy`` configures
    the runtime's collective ops, which TensorFlow only allows at program start.
    """
    if name == "auto":
        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()  # the default: one device, no overhead
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        read_tf_config()  # a clear error now rather than TensorFlow's later
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        patch_keras_for_multi_worker()
        return strategy
    raise ValueError(f"unknown strategy {name!r}")  # params.py only lets the three through


@dataclass(frozen=True)
class Team:
    """The processes that compute one result together (the features stage's workers),
    and how each one's part reaches all of them.

    ``strategy`` is None for a process alone; under ``multi_worker`` it is the
    ``MultiWorkerMirroredStrategy`` training uses, whose collectives carry the parts.
    """

    task: Task
    strategy: tf.distribute.Strategy | None = None

    @staticmethod
    def join(strategy: str) -> Team:
        """This process's team under ``train.strategy``; call it before any other
        TensorFlow op (see ``make_strategy``). Only ``multi_worker`` has company."""
        if strategy != "multi_worker":
            return Team(ALONE)
        return Team(read_tf_config(), make_strategy(strategy))

    def gather(self, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Every worker's ``arrays``, in worker order (``Task.index``); each worker must
        call it as often as the others, with the same keys, shapes and dtypes."""
        if self.strategy is None or self.task.count == 1:
            return [arrays]
        strategy = self.strategy
        # A worker with several local devices has several replicas, each handed the
        # same arrays: keep the first local replica's copy of each worker's.
        local = strategy.num_replicas_in_sync // self.task.count
        parts: dict[str, list[np.ndarray]] = {}
        for key in sorted(arrays):  # the same order of collectives on every worker
            value = tf.constant(arrays[key])
            spread = strategy.experimental_distribute_values_from_function(lambda _, v=value: v)
            gathered = strategy.gather(spread, axis=0).numpy()
            parts[key] = np.split(gathered, strategy.num_replicas_in_sync)[::local]
        return [{key: parts[key][w] for key in parts} for w in range(self.task.count)]


def weights_digest(model: keras.Model) -> str:
    """sha256 of every weight's dtype, shape and bytes, in the model's order.

    Workers that trained together must print the same digest; so must the saved model.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value))
        # Little-endian bytes whatever the machine, so digests compare across hosts.
        value = value.astype(value.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


# --- Keras 3 and MultiWorkerMirroredStrategy --------------------------------------------
# Keras 3's fit() breaks on MultiWorkerMirroredStrategy (keras-team/keras#20585,
# tensorflow/tensorflow#72388; still so in Keras 3.15): its first-batch model build
# hands a nested batch to strategy.reduce, which takes one tensor at a time, and it
# averages the per-replica loss and metrics "along axis 0", which a scalar has not.
# The two wrappers below change only that: with any other strategy, or when Keras
# fixes it, they pass straight through to Keras' own code.

_keras_reduce_per_replica = keras_tf_trainer.reduce_per_replica
_keras_symbolic_build = keras_tf_trainer.TensorFlowTrainer._maybe_symbolic_build


def _multi_worker(strategy: Any) -> bool:
    return bool(keras_tf_trainer._collective_all_reduce_multi_worker(strategy))


def _reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
    if reduction != "auto" or not _multi_worker(strategy):
        return _keras_reduce_per_replica(values, strategy, reduction)

    def mean(value: Any) -> Any:
        if len(value.shape) == 0:  # a loss or metric: the mean over all replicas
            return strategy.reduce("MEAN", value, axis=None)
        return _keras_reduce_per_replica(value, strategy, reduction)

    return tree.map_structure(mean, values)


def _maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> Any:
    strategy = self._distribute_strategy
    if iterator is None or strategy is None or not _multi_worker(strategy):
        return _keras_symbolic_build(self, iterator=iterator, data_batch=data_batch)
    # The build needs only the batch's shapes and dtypes: this worker's first
    # replica's part of the first batch has them, as Keras' averaged batch would.
    for _, _, it in iterator:
        data_batch = tree.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
        break
    return _keras_symbolic_build(self, data_batch=data_batch)


def patch_keras_for_multi_worker() -> None:
    """Make ``model.fit`` work under ``MultiWorkerMirroredStrategy`` (see above)."""
    keras_tf_trainer.reduce_per_replica = _reduce_per_replica
    keras_tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
