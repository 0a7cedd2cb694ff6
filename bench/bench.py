"""Benchmark of the imgclf pipeline against its references, measured in the same run.

Every figure is printed beside its reference and as a ratio, because the machines are
shared and absolute times drift; see bench/README.md for what each figure means.

usage: python bench/bench.py [--quick] [--json-out FILE] [--only SECTIONS]
                             [--params FILE ...] [--repeats N]

The real photos are read from $IMGCLF_DATA_MIRROR (default ../shared/data/animals beside
the repository) and never copied into the repository; scratch data goes to a temporary
folder that is removed at the end. The last line printed is one JSON object with every
figure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from imgclf.data.layout import has_image_suffix
from imgclf.params import BACKBONES, merge

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_MIRROR = SHARED / "data" / "animals"
DEFAULT_BASELINE = SHARED / "bench" / "naive_keras.py"
DEFAULT_KERAS_HOME = SHARED / "weights" / "keras"
# Section 6 times the default pipeline and the from-scratch recipe.
DEFAULT_PARAMS = (REPO / "params.yaml", REPO / "recipes" / "from-scratch.yaml")

SECTIONS = ("throughput", "overhead", "split", "incremental", "memory", "tta", "export", "serve",
            "backbones", "tfrecord", "scale")
ARCHS = ("small", "medium", "large")
# Section 1: ours / baseline images per second must reach these.
THROUGHPUT_TARGETS = {"small": 1.3, "medium": 1.0, "large": 1.0}
OVERHEAD_TARGET = 0.95  # section 2: shards / in-memory tensors
SPLIT_TARGET = 1.8  # section 3: split.run / one-thread Pillow loop
NOOP_REPRO_TARGET_S = 3.0  # section 4: a `dvc repro` with nothing to do
MEMORY_TARGET = 1.25  # section 5: peak RSS at 10x the images / at 1x
# Section 6: (test accuracy at least, wall seconds at most) for each kind of recipe.
TTA_TARGETS = {"pretrained": (0.985, 300.0), "from scratch": (0.90, 600.0)}
# Stages that only fetch inputs (the photos, pretrained weights): run before timing section 6.
SETUP_STAGES = ("download", "pretrained", "weights")
EXPORT_PER_CLASS = (20, 100)  # section 7: photos a class split for it (--quick, full)
EXPORT_RUNS = (20, 100)  # section 7: single-image calls timed per format (--quick, full)
VARIANTS = 10  # section 5: generated copies of each photo for the large set
# Section 8: concurrent HTTP clients, and requests in all per level (--quick: fewer).
SERVE_CLIENTS = (1, 8, 32)
SERVE_REQUESTS, SERVE_REQUESTS_QUICK = 256, 64
# Section 8: server requests/s / direct in-process images/s, per number of clients.
SERVE_TARGETS = {1: 0.5, 8: 1.0, 32: 1.5}
# Section 10: prepared bytes / source JPEG bytes at the default encoding and image size,
# and training images/s from the encoded shards / from raw-pixel shards, per (arch, px).
PREPARED_BYTES_TARGET = 1.5
ENCODED_THROUGHPUT_TARGETS = {("mobilenet_v2", 224): 0.97, ("small", 128): 0.9}
SCALE_N = 100_000  # section 11: generated images split (--scale-n)
SCALE_MEMORY_TARGET = 1.25  # section 11: split peak RSS at SCALE_N / at the 3,000 photos
TTA_BASELINE_SIZE = 128  # section 6: the baseline at its own default size, whatever ours uses
# Section 9: the backbone every other one is compared with (the default model.arch), and
# (pixels, batch, timed steps) of the full and the --quick run.
BACKBONE_REFERENCE = "mobilenet_v2"
BACKBONE_RUN = {False: (224, 16, 3), True: (32, 4, 1)}
BACKBONES_QUICK = ("mobilenet_v2", "mobilenet_v3_small")  # --quick checks the mechanics only

_T0 = time.perf_counter()


class BenchError(RuntimeError):
    """A measurement could not be made; the message says which and why."""


# --- figures, targets and the table (pure; tests/test_bench.py checks these) -------------


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


@dataclass(frozen=True)
class Target:
    """A pass mark: ``op`` (">=" or "<=") ``threshold``, applied to the ratio or the value."""

    op: str
    threshold: float
    on: str = "ratio"  # "ratio": ours / reference; "value": ours itself

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=") or self.on not in ("ratio", "value"):
            raise ValueError(f"bad target {self.op!r} on {self.on!r}")

    def met(self, value: float | None, reference: float | None) -> bool | None:
        """Whether the figure passes; None when it could not be measured."""
        x = ratio(value, reference) if self.on == "ratio" else value
        if x is None:
            return None
        return x >= self.threshold if self.op == ">=" else x <= self.threshold

    def text(self, unit: str) -> str:
        """E.g. ``>= 1.3x`` (on the ratio) or ``<= 3 s`` (on the value)."""
        suffix = "x" if self.on == "ratio" else f" {unit}"
        return f"{self.op} {self.threshold:g}{suffix}".rstrip()


@dataclass(frozen=True)
class Figure:
    """One measurement of ours beside its reference from the same run."""

    section: str
    name: str
    value: float | None
    reference: float | None
    unit: str
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.reference)

    @property
    def met(self) -> bool | None:
        return self.target.met(self.value, self.reference) if self.target else None

    def to_json(self) -> dict[str, Any]:
        r = self.ratio
        return {"section": self.section, "name": self.name, "ours": _round(self.value),
                "reference": _round(self.reference), "unit": self.unit,
                "ratio": None if r is None else round(r, 3),
                "target": self.target.text(self.unit) if self.target else None,
                "met": self.met, "note": self.note}


def _round(x: float | None) -> float | None:
    """Four significant decimals are plenty for every figure here."""
    return None if x is None else round(x, 4)


def fmt_number(x: float | None) -> str:
    """A short, aligned-friendly rendering: 1,234 / 12.3 / 0.9867 / -."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def table_rows(figures: Sequence[Figure]) -> list[list[str]]:
    """The cells of the table, header first."""
    rows = [["section", "figure", "ours", "reference", "unit", "ratio", "target", "met"]]
    for f in figures:
        r = f.ratio
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        rows.append([f.section, f.name, fmt_number(f.value), fmt_number(f.reference), f.unit,
                     "-" if r is None else f"{r:.3f}x", f.target.text(f.unit) if f.target else "-",
                     met])
    return rows


def format_table(figures: Sequence[Figure]) -> str:
    """A plain-text table, numbers right-aligned, with each figure's note beneath it."""
    rows = table_rows(figures)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 5}

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    for f, row in zip(figures, rows[1:], strict=True):
        out.append(line(row))
        if f.note:
            out.append(" " * (widths[0] + 2) + f"  ({f.note})")
    return "\n".join(out)


def summary(figures: Sequence[Figure], errors: dict[str, str], info: dict[str, Any]) -> dict:
    """The final JSON object: every figure, the targets missed and any section that failed."""
    judged = [f for f in figures if f.met is not None]
    return {"bench": "imgclf", **info, "figures": [f.to_json() for f in figures],
            "targets_met": sum(bool(f.met) for f in judged), "targets_judged": len(judged),
            "targets_missed": [f"{f.section}: {f.name}" for f in judged if not f.met],
            "errors": errors}


def parse_sections(text: str) -> list[str]:
    """``--only`` value -> section names in run order; raise ValueError on an unknown one."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def share(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def stages_ran(dvc_output: str) -> list[str]:
    """Names of the stages ``dvc repro`` printed as running, in order."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def baseline_epochs(target_s: float, one_epoch_wall_s: float, epoch_s: float) -> int:
    """Epochs for the baseline to run about ``target_s`` in all.

    ``one_epoch_wall_s`` is the whole 1-epoch run (start-up, warm-up, epoch) and
    ``epoch_s`` the epoch alone, so start-up costs ``one_epoch_wall_s - epoch_s``.
    """
    startup = max(0.0, one_epoch_wall_s - epoch_s)
    return max(1, round((target_s - startup) / epoch_s))


def recipe_kind(params: dict[str, Any]) -> str:
    """``pretrained`` when the model starts from ImageNet weights, else ``from scratch``."""
    model = params.get("model") or {}
    pretrained = model.get("arch") in BACKBONES and model.get("pretrained", True)
    return "pretrained" if pretrained else "from scratch"


# --- environment, files and child processes ----------------------------------------------


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the start; stdout is for the results."""
    print(f"[bench {time.perf_counter() - _T0:6.0f}s] {message}", file=sys.stderr, flush=True)


def mirror_dir() -> Path:
    """The folder of the real photos (cats/, dogs/, snakes/)."""
    path = Path(os.environ.get("IMGCLF_DATA_MIRROR") or DEFAULT_MIRROR)
    if not path.is_dir():
        raise SystemExit(f"bench: {path}: not a folder; set IMGCLF_DATA_MIRROR to the folder "
                         "of the animals photos (cats/, dogs/, snakes/)")
    return path


def child_env() -> dict[str, str]:
    """The environment of the stages and scripts run as child processes.

    The venv's bin goes first on PATH (dvc.yaml calls ``imgclf``); the mirror and
    KERAS_HOME are passed on; W&B is off unless WANDB_MODE says otherwise, because it
    is the pipeline that is measured, not the tracker.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["IMGCLF_DATA_MIRROR"] = str(mirror_dir())
    if "KERAS_HOME" not in env and DEFAULT_KERAS_HOME.is_dir():
        env["KERAS_HOME"] = str(DEFAULT_KERAS_HOME)
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
    return env


def class_files(root: Path) -> dict[str, list[Path]]:
    """Image files of each class sub-folder of ``root``, sorted."""
    return {d.name: sorted(p for p in d.iterdir() if has_image_suffix(p.name))
            for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def copy_subset(src: Path, dest: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` photos of each class of ``src`` to ``dest``."""
    for name, files in class_files(src).items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for path in files[:per_class]:
            shutil.copy2(path, dest / name / path.name)
    return dest


def count_images(root: Path) -> int:
    return sum(len(files) for files in class_files(root).values())


@dataclass
class ChildRun:
    """What a finished child process did: wall time, output and (if polled) peak memory.

    Memory is polled rather than read from getrusage: a child's ``ru_maxrss`` includes
    the RSS it had between fork and exec, i.e. that of this process with TensorFlow.
    """

    seconds: float
    output: str
    peak_rss_mb: float | None = None  # summed over the process tree, at the worst poll
    peak_private_mb: float | None = None  # the same without shared and file-backed pages


def _tree_memory(proc: Any) -> tuple[int, int]:
    """(RSS, RSS minus shared pages) summed over ``proc`` and its descendants, in bytes."""
    import psutil

    rss = private = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            m = p.memory_info()
            rss, private = rss + m.rss, private + m.rss - m.shared
    return rss, private


def run_child(cmd: Sequence[str], cwd: Path, *, poll_s: float | None = None,
              what: str = "") -> ChildRun:
    """Run ``cmd``; raise BenchError with its output's tail when it fails.

    With ``poll_s``, the process tree's memory is sampled every ``poll_s`` seconds.
    """
    peaks = [0, 0]
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=child_env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        if poll_s:
            import psutil

            watched = psutil.Process(proc.pid)
            while proc.poll() is None:
                peaks = [max(a, b) for a, b in zip(peaks, _tree_memory(watched), strict=True)]
                time.sleep(poll_s)
        proc.wait()
        seconds = time.perf_counter() - t0
        out.seek(0)
        output = out.read()
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise BenchError(f"{what or cmd[0]} failed (exit {proc.returncode}):\n{tail}")
    if not poll_s:
        return ChildRun(seconds, output)
    mb = 1024 * 1024
    return ChildRun(seconds, output, peaks[0] / mb, peaks[1] / mb)


def imgclf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgclf", *args]


def dvc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def last_json(output: str) -> dict[str, Any]:
    """The last line of ``output`` that is a JSON object."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON line in the output:\n{output[-2000:]}")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what in-process stages print to stderr, keeping stdout for the results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


# --- the run's settings and shared inputs --------------------------------------------------


@dataclass
class Bench:
    """Settings of one run and the inputs several sections share (made on first use)."""

    quick: bool
    work: Path  # scratch folder, removed at the end
    baseline: Path
    repeats: int = 1
    archs: tuple[str, ...] = ARCHS
    params_files: list[Path] = field(default_factory=lambda: list(DEFAULT_PARAMS))
    batch: int = 32
    scale_n: int = SCALE_N

    @property
    def size(self) -> int:
        """Pixels a side for sections 1-3 and 5."""
        return 64 if self.quick else 128

    @cached_property
    def photos(self) -> Path:
        """The real photos of sections 1-3: all of them, or 30 a class with --quick."""
        if not self.quick:
            return mirror_dir()
        return copy_subset(mirror_dir(), self.work / "photos", 30)

    @cached_property
    def prepared(self) -> Path:
        """The split stage's shards of ``photos`` (sections 1 and 2)."""
        from imgclf.data import split
        from imgclf.params import DataParams, SplitParams

        out = self.work / "prepared"
        log(f"splitting {self.photos} at {self.size} px for the training figures")
        with quiet_stdout():
            split.run(DataParams(image_size=self.size), SplitParams(), self.photos, out)
        return out

    def repo_params(self) -> dict[str, Any]:
        return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")) or {}


# --- sections 1 and 2: training throughput and input-pipeline overhead ---------------------


def compiled_cnn(arch: str, size: int, n_classes: int, steps: int) -> Any:
    """The named CNN, set up and compiled as the train stage does with default train.*.

    That is ``configure_runtime`` first (seeds and TensorFlow op determinism, on by
    default), then Adam at the default rate over ``steps`` batches an epoch, sparse
    categorical cross-entropy and accuracy.
    """
    from imgclf.models.architectures import build_model
    from imgclf.params import ModelParams, TrainParams
    from imgclf.training.optim import make_accuracy, make_loss, make_optimizer
    from imgclf.training.train import configure_runtime

    train = TrainParams()
    configure_runtime(train)
    model = build_model(ModelParams(arch=arch), size, n_classes)
    model.compile(optimizer=make_optimizer(train, train.learning_rate, steps),
                  loss=make_loss(train), metrics=[make_accuracy(train)],
                  jit_compile=train.jit_compile)
    return model


def warm_up(model: Any, ds: Any) -> None:
    """The baseline's convention: fit 2 batches first (tracing and graph building)."""
    model.fit(ds.take(2), epochs=1, verbose=0, shuffle=False)


def timed_epoch(model: Any, ds: Any, n_images: int) -> float:
    """Images per second of one epoch of ``fit`` (no validation)."""
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    return n_images / (time.perf_counter() - t0)


def shard_datasets(prepared: Path, batch: int) -> tuple[Any, Any, Any]:
    """(meta, shuffled train batches, val batches) exactly as the train stage makes them."""
    from imgclf.data.shards import read_meta
    from imgclf.training.dataset import make_dataset

    meta = read_meta(prepared)
    train = make_dataset(prepared, meta, "train", batch, shuffle=True, seed=42)
    return meta, train, make_dataset(prepared, meta, "val", batch)


def ours_throughput(bench: Bench, arch: str) -> tuple[float, float]:
    """(train images/s without validation, the same counting a cold validation pass)."""
    import keras

    meta, train, val = shard_datasets(bench.prepared, bench.batch)
    keras.backend.clear_session()
    model = compiled_cnn(arch, meta.image_size, len(meta.class_names), len(train))
    n = meta.counts["train"]
    warm_up(model, train)
    best = max(timed_epoch(model, train, n) for _ in range(bench.repeats))
    t0 = time.perf_counter()
    model.evaluate(val, verbose=0)  # traced here, as the baseline's is inside its timed fit
    val_s = time.perf_counter() - t0
    return best, n / (n / best + val_s)


def baseline_run(bench: Bench, data: Path, arch: str, size: int, epochs: int = 1) -> dict:
    """The peer baseline script's JSON line, with its whole wall time added as ``wall_s``."""
    cmd = [sys.executable, str(bench.baseline), str(data), "--arch", arch, "--size", str(size),
           "--epochs", str(epochs)]
    run = run_child(cmd, bench.work, what=f"baseline {arch}")
    return last_json(run.output) | {"wall_s": run.seconds}


def section_throughput(bench: Bench) -> list[Figure]:
    """Section 1: images/s of our shards + model vs the baseline script, per arch."""
    figures = []
    for arch in bench.archs:
        log(f"throughput: baseline {arch}")
        base = max((baseline_run(bench, bench.photos, arch, bench.size)
                    for _ in range(bench.repeats)), key=lambda r: r["images_per_s"])
        log(f"throughput: ours {arch}")
        ours, ours_val = ours_throughput(bench, arch)
        note = (f"1 epoch after a 2-batch warm-up; ours without validation; counting a "
                f"validation pass as the baseline's timing does: {ours_val:.1f} img/s = "
                f"{ours_val / base['images_per_s']:.2f}x")
        figures.append(Figure("1 throughput", f"train {arch} {bench.size}px", ours,
                              base["images_per_s"], "img/s",
                              Target(">=", THROUGHPUT_TARGETS.get(arch, 1.0)), note))
    return figures


def memory_dataset(prepared: Path, batch: int) -> tuple[Any, int]:
    """The train split as float32 tensors in memory, batched: the compute ceiling."""
    import tensorflow as tf

    from imgclf.data.shards import read_split

    images, labels = read_split(prepared, "train")
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), labels))
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE), len(labels)


def section_overhead(bench: Bench) -> list[Figure]:
    """Section 2: the same model fed from shards vs from tensors already in memory."""
    import keras

    arch = "small"  # the least compute per image, so the input pipeline weighs the most
    keras.backend.clear_session()
    meta, shards, _ = shard_datasets(bench.prepared, bench.batch)
    in_memory, n = memory_dataset(bench.prepared, bench.batch)
    models = []
    for ds in (shards, in_memory):
        model = compiled_cnn(arch, meta.image_size, len(meta.class_names), len(shards))
        warm_up(model, ds)
        models.append(model)
    repeats = max(2, bench.repeats)
    log(f"overhead: {repeats} interleaved epochs of each, {arch} model")
    rates: list[list[float]] = [[], []]
    for _ in range(repeats):  # interleaved, so a busy moment of the machine hits both
        for i, ds in enumerate((shards, in_memory)):
            rates[i].append(timed_epoch(models[i], ds, n))
    return [Figure("2 overhead", f"shards vs in-memory, {arch} {meta.image_size}px",
                   max(rates[0]), max(rates[1]), "img/s", Target(">=", OVERHEAD_TARGET),
                   f"best of {repeats} epochs each; in-memory = from_tensor_slices of float32")]


# --- section 3: split throughput ----------------------------------------------------------


def pillow_loop(files: Sequence[Path], size: int, out: Path) -> float:
    """Images/s of the one-thread reference: open, RGB, resize, tobytes, write."""
    from PIL import Image

    t0 = time.perf_counter()
    with open(out, "wb") as f:
        for path in files:
            with Image.open(path) as im:
                rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                f.write(rgb.tobytes())
    return len(files) / (time.perf_counter() - t0)


def split_rate(raw: Path, size: int, out: Path, n: int) -> float:
    """Images/s of the split stage's ``run`` (decode, hash, de-duplicate, split, write)."""
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    t0 = time.perf_counter()
    with quiet_stdout():
        split.run(DataParams(image_size=size), SplitParams(), raw, out)
    return n / (time.perf_counter() - t0)


def section_split(bench: Bench) -> list[Figure]:
    """Section 3: split.run on all cores vs a one-thread Pillow loop."""
    files = [p for fs in class_files(bench.photos).values() for p in fs]
    for path in files:  # both sides then read from the page cache
        path.read_bytes()
    ours, ref = [], []
    for r in range(bench.repeats):
        log(f"split: Pillow loop and split.run over {len(files)} photos ({r + 1}/{bench.repeats})")
        ref.append(pillow_loop(files, bench.size, bench.work / "pillow.bin"))
        ours.append(split_rate(bench.photos, bench.size, bench.work / f"split{r}", len(files)))
    cores = len(os.sched_getaffinity(0))
    return [Figure("3 split", f"split.run {bench.size}px, {len(files)} photos", max(ours),
                   max(ref), "img/s", Target(">=", SPLIT_TARGET),
                   f"{cores} cores vs 1 thread; ours also hashes, de-duplicates and writes "
                   "the manifest")]


# --- sections 4 and 6: dvc in a throw-away project -----------------------------------------


def make_project(root: Path, params: dict[str, Any]) -> Path:
    """A git + DVC repository with this project's pipeline and ``params`` as params.yaml."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    write_params(root / "params.yaml", params)
    run_child(["git", "init", "-q", "-b", "main"], root, what="git init")
    run_child(dvc_cmd("init", "-q"), root, what="dvc init")
    run_child(["git", "add", "-A"], root, what="git add")
    run_child(["git", "commit", "-qm", "pipeline"], root, what="git commit")
    return root


def write_params(path: Path, params: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def always_changed(project: Path) -> set[str]:
    """The stages ``dvc.yaml`` marks ``always_changed``: they run on every repro by design
    (``source`` fingerprints data.source in a fraction of a second), not as a rerun."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name for name, stage in stages.items() if stage.get("always_changed")}


def repro(project: Path, *targets: str) -> tuple[float, list[str]]:
    """(wall seconds, stages that ran) of ``dvc repro [targets]`` in ``project``."""
    run = run_child(dvc_cmd("repro", *targets), project, what="dvc repro")
    return run.seconds, stages_ran(run.output)


def section_incremental(bench: Bench) -> list[Figure]:
    """Section 4: a no-op ``dvc repro`` and one after an evaluate-only change."""
    per_class = 20 if bench.quick else 60
    photos = copy_subset(mirror_dir(), bench.work / "incremental-photos", per_class)
    params = merge(bench.repo_params(), {"data": {"source": str(photos), "image_size": 64},
                                         "model": {"arch": "small"}, "train": {"epochs": 1}})
    project = make_project(bench.work / "incremental", params)
    log(f"incremental: first dvc repro ({per_class} photos a class)")
    full_s, _ = repro(project)
    log("incremental: no-op dvc repro, then evaluate.batch_size changed")
    noop_s, noop_ran = repro(project)
    old = params["evaluate"]["batch_size"]
    params["evaluate"]["batch_size"] = 32 if old != 32 else 64
    write_params(project / "params.yaml", params)
    changed_s, changed_ran = repro(project)
    return [
        Figure("4 incremental", "no-op dvc repro", noop_s, full_s, "s",
               Target("<=", NOOP_REPRO_TARGET_S, on="value"),
               f"reference: the first full repro; stages run: {', '.join(noop_ran) or 'none'}"),
        Figure("4 incremental", "evaluate.batch_size changed", changed_s, full_s, "s", None,
               f"stages run: {', '.join(changed_ran) or 'none'}"),
        Figure("4 incremental", "only evaluate reran (1 = yes)",
               float([s for s in changed_ran if s not in always_changed(project)] == ["evaluate"]),
               None, "",
               Target(">=", 1, on="value")),
    ]


def timed_pipeline(bench: Bench, params_file: Path) -> tuple[float, float, list[str], dict]:
    """(seconds, test accuracy, stages run, params) of a full repro from downloaded data."""
    # A recipe file (recipes/*.yaml) holds only the keys it changes: it goes over params.yaml.
    params = merge(bench.repo_params(), yaml.safe_load(params_file.read_text(encoding="utf-8"))
                   or {})
    if bench.quick:
        subset = copy_subset(mirror_dir(), bench.work / f"tta-photos-{params_file.stem}", 20)
        params = merge(params, {"data": {"source": str(subset), "image_size": 64},
                                "train": {"epochs": 1, "warmup_epochs": 0}})
    project = make_project(bench.work / f"tta-{params_file.stem}", params)
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    setup = [s for s in SETUP_STAGES if s in stages]
    log(f"tta {params_file.name}: fetching inputs untimed ({', '.join(setup)})")
    for stage in setup:
        repro(project, stage)
    log(f"tta {params_file.name}: timed dvc repro")
    seconds, ran = repro(project)
    metrics = json.loads((project / "metrics" / "eval.json").read_text(encoding="utf-8"))
    return seconds, float(metrics["test"]["accuracy"]), ran, params


def section_tta(bench: Bench) -> list[Figure]:
    """Section 6: wall time and test accuracy of a full repro vs the baseline, same time."""
    figures = []
    for params_file in bench.params_files:
        seconds, accuracy, ran, params = timed_pipeline(bench, params_file)
        data = Path(params["data"]["source"]) if bench.quick else mirror_dir()
        size = 64 if bench.quick else TTA_BASELINE_SIZE
        log(f"tta {params_file.name}: baseline medium, 1 epoch to size its run")
        one = baseline_run(bench, data, "medium", size)
        epochs = baseline_epochs(seconds, one["wall_s"], one["seconds"])
        log(f"tta {params_file.name}: baseline medium, {epochs} epochs")
        base = baseline_run(bench, data, "medium", size, epochs)
        kind = recipe_kind(params)
        min_acc, max_s = TTA_TARGETS[kind]
        label = f"{params_file.name} ({kind})"
        figures += [
            Figure("6 tta", f"{label}: test accuracy", accuracy, base["val_accuracy"], "acc",
                   Target(">=", min_acc, on="value"),
                   f"reference: baseline medium {size}px, {epochs} epochs, val accuracy of "
                   "its last epoch"),
            Figure("6 tta", f"{label}: repro wall time", seconds, base["wall_s"], "s",
                   Target("<=", max_s, on="value"),
                   f"stages timed: {', '.join(ran)}; reference: the baseline's whole run"),
        ]
    return figures


# --- section 5: memory at scale -------------------------------------------------------------


def _make_variant(job: tuple[str, str, int]) -> None:
    """Write a flipped/cropped, re-encoded copy of a photo (a worker of ``make_variants``)."""
    from PIL import Image, ImageOps

    src, dest, seed = job
    rng = random.Random(seed)
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    if seed % 2:
        rgb = ImageOps.mirror(rgb)
    w, h = rgb.size
    scale = rng.uniform(0.75, 0.95)
    cw, ch = int(w * scale), int(h * scale)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    rgb.crop((x, y, x + cw, y + ch)).save(dest, "JPEG", quality=rng.randint(70, 95))


def make_variants(src: Path, dest: Path, copies: int) -> Path:
    """``copies`` generated variants of every photo of ``src`` under ``dest``, on all cores."""
    jobs = []
    for name, files in class_files(src).items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files):
            jobs += [(str(path), str(dest / name / f"{path.stem}_v{k}.jpg"), i * copies + k)
                     for k in range(copies)]
    workers = len(os.sched_getaffinity(0))
    # spawn: this process may hold TensorFlow's threads by now.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_make_variant, jobs, chunksize=64):
            pass
    return dest


def stage_memory(bench: Bench, raw: Path, tag: str) -> tuple[ChildRun, ChildRun]:
    """Peak memory of ``imgclf split`` then ``imgclf train`` (small, 1 epoch) on ``raw``."""
    work = bench.work / f"memory-{tag}"
    work.mkdir()
    params = merge(bench.repo_params(), {"data": {"image_size": bench.size},
                                         "model": {"arch": "small"}, "train": {"epochs": 1}})
    write_params(work / "params.yaml", params)
    p = ["--params", str(work / "params.yaml")]
    log(f"memory: imgclf split of {tag} images")
    split = run_child(imgclf_cmd("split", *p, "--raw", str(raw), "--out", "prepared"), work,
                      poll_s=0.05, what="imgclf split")
    log(f"memory: imgclf train on {tag} images")
    train = run_child(imgclf_cmd("train", *p, "--data", "prepared", "--model", "model.keras",
                                 "--live", "live"), work, poll_s=0.05, what="imgclf train")
    shutil.rmtree(work / "prepared")
    return split, train


def section_memory(bench: Bench) -> list[Figure]:
    """Section 5: peak RSS of split and train at 10x the images vs at 1x."""
    if bench.quick:
        small = copy_subset(mirror_dir(), bench.work / "memory-photos", 100)
        large = mirror_dir()
    else:
        small = mirror_dir()
        log(f"memory: generating {VARIANTS} variants of each photo")
        large = make_variants(small, bench.work / "memory-variants", VARIANTS)
    n_small, n_large = count_images(small), count_images(large)
    runs_small = stage_memory(bench, small, str(n_small))
    runs_large = stage_memory(bench, large, str(n_large))
    figures = []
    for stage, a, b in zip(("split", "train"), runs_small, runs_large, strict=True):
        note = (f"tree RSS summed over processes; without shared/file pages "
                f"{b.peak_private_mb:.0f} vs {a.peak_private_mb:.0f} MB; "
                f"{b.seconds:.0f} s vs {a.seconds:.0f} s")
        figures.append(Figure("5 memory", f"{stage} peak RSS, {n_large} vs {n_small} images",
                              b.peak_rss_mb, a.peak_rss_mb, "MB", Target("<=", MEMORY_TARGET),
                              note))
    return figures


# --- section 7: exported formats ---------------------------------------------------------------


def section_export(bench: Bench) -> list[Figure]:
    """Section 7: each export format's size, single-image latency and batch throughput
    beside the Keras model's, all on the same test images in this run.

    The model is the default params' architecture at its image size (``small`` at 64 px
    with --quick), untrained: sizes and speeds do not depend on the weights' values,
    and accuracy and agreement are the export stage's own checks (metrics/export.json).
    """
    from imgclf.data import split
    from imgclf.data.shards import read_split
    from imgclf.export.calibration import calibration_images
    from imgclf.export.scoring import predict_timed, single_image_latency_ms
    from imgclf.export.stage import size_bytes
    from imgclf.export.writers import write_format
    from imgclf.inference.runtimes import Runtime, load_runtime
    from imgclf.models.architectures import build_model
    from imgclf.models.saving import ModelInfo, save_model
    from imgclf.params import DataParams, ModelParams, params_from_dict

    params = params_from_dict(bench.repo_params())
    model_params = ModelParams(arch="small") if bench.quick else \
        dataclasses.replace(params.model, pretrained=False)
    size = 64 if bench.quick else params.data.image_size
    per_class, runs = EXPORT_PER_CLASS[not bench.quick], EXPORT_RUNS[not bench.quick]
    work = bench.work / "export"
    photos = copy_subset(mirror_dir(), work / "photos", per_class)
    log(f"export: splitting {count_images(photos)} photos at {size} px")
    with quiet_stdout():
        split.run(DataParams(image_size=size), params.split, photos, work / "prep")
    images, _ = read_split(work / "prep", "test")
    names = sorted(class_files(photos))
    model = build_model(model_params, size, len(names))
    info = ModelInfo(names, size)
    save_model(model, work / "model.keras", info)
    export = params.export  # the repo's export.* (formats, batch size, calibration)
    batch = export.batch_size
    runtimes = {"keras": Runtime("keras", work / "model.keras", info, model.predict_on_batch)}
    calibration = calibration_images(work / "prep", export.int8_samples)
    for fmt in export.formats:
        log(f"export: writing {fmt}")
        with quiet_stdout():
            runtimes[fmt] = load_runtime(write_format(fmt, model, info, work / "out",
                                                      calibration))
    measured = {}
    for fmt, runtime in runtimes.items():
        log(f"export: timing {fmt} on {len(images)} test images")
        _, rate = predict_timed(runtime, images, batch)
        p50, p95 = single_image_latency_ms(runtime, images, runs)
        measured[fmt] = (size_bytes(runtime.path) / 1e6, p50, p95, rate)
    k_mb, k_p50, _, k_rate = measured["keras"]
    what = f"{model_params.arch} at {size} px"
    figures = []
    for fmt, (mb, p50, p95, rate) in measured.items():
        if fmt == "keras":
            continue
        target = Target("<=", export.int8_max_size_ratio) if fmt == "tflite_int8" \
            else None
        figures += [
            Figure("7 export", f"{fmt} size vs .keras ({what})", mb, k_mb, "MB", target,
                   "the .keras file is saved uncompiled (no optimizer state)"),
            Figure("7 export", f"{fmt} single-image latency (median) vs Keras", p50, k_p50,
                   "ms", note=f"p95 {p95:.2f} ms; {runs} calls"),
            Figure("7 export", f"{fmt} batch throughput vs Keras", rate, k_rate, "img/s",
                   note=f"batches of {batch}, {len(images)} test images"),
        ]


# --- section 8: the prediction server under load --------------------------------------------


def multipart(name: str, data: bytes, boundary: str = "imgclf-bench") -> tuple[bytes, str]:
    """(body, content type) of a one-file upload in the ``files`` field."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def serve_model(bench: Bench) -> tuple[Path, int]:
    """(model file, image size): params.yaml's architecture, or ``small`` with --quick.

    The weights are left untrained (no pretrained ones are fetched): the time of a
    prediction does not depend on their values.
    """
    from imgclf.models.architectures import build_model
    from imgclf.models.saving import ModelInfo, save_model
    from imgclf.params import ModelParams, load_params

    params = load_params(REPO / "params.yaml")
    if bench.quick:
        model_params, size = ModelParams(arch="small"), 64
    else:
        model_params = dataclasses.replace(params.model, pretrained=False)
        size = params.data.image_size
    path = bench.work / "serve" / "model.keras"
    path.parent.mkdir(parents=True)
    names = sorted(class_files(mirror_dir()))
    save_model(build_model(model_params, size, len(names)), path, ModelInfo(names, size))
    return path, size


@contextlib.contextmanager
def serving(model: Path, cwd: Path) -> Iterator[tuple[str, int]]:
    """``imgclf serve --port 0`` as a child process: yield its (host, port)."""
    log_path = cwd / "serve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(imgclf_cmd("serve", "--model", str(model), "--port", "0",
                                           "--tta", "none"),
                                cwd=cwd, env=child_env() | {"IMGCLF_SERVE_TOKEN": ""},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            found = re.search(r" at http://([\d.]+):(\d+)/ ;", text)
            if found and "Application startup complete" in text:
                yield found[1], int(found[2])
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"imgclf serve did not start:\n{text[-2000:]}")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def load_level(address: tuple[str, int], bodies: Sequence[tuple[bytes, str]], clients: int,
               total: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in s) of ``total`` POST /predict from ``clients`` threads.

    Each client keeps one connection and sends its share one after another; all start
    together. Every answer must be 200 with a prediction, or BenchError.
    """
    import http.client
    import threading

    latencies: list[float] = []
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(i: int, count: int) -> None:
        conn = http.client.HTTPConnection(*address, timeout=300)
        start.wait()
        for k in range(count):
            body, ctype = bodies[(i * 7919 + k) % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": ctype})
            answer = conn.getresponse()
            data = answer.read()
            latencies.append(time.perf_counter() - t0)
            if answer.status != 200 or b'"predicted"' not in data:
                failures.append(f"{answer.status} {data[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i, n))
               for i, n in enumerate(share(total, clients))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if failures:
        raise BenchError(f"{len(failures)} of {total} requests failed, e.g. {failures[0]}")
    return total / seconds, latencies


def direct_calls(model_path: Path, photos: Sequence[bytes], size: int,
                 total: int) -> tuple[float, list[float]]:
    """(images/s, latencies in s) of ``total`` images decoded and predicted one at a time
    in this process, with the functions the server uses: the reference of section 8."""
    import numpy as np

    from imgclf.data.images import decode_image
    from imgclf.inference.tta import predict_batch
    from imgclf.models.saving import load_model

    model, _ = load_model(model_path)
    for data in photos[:3]:  # warm-up: tracing
        predict_batch(model, decode_image(data, size)[None].astype(np.float32))
    latencies = []
    t0 = time.perf_counter()
    for k in range(total):
        t1 = time.perf_counter()
        predict_batch(model, decode_image(photos[k % len(photos)], size)[None]
                      .astype(np.float32))
        latencies.append(time.perf_counter() - t1)
    return total / (time.perf_counter() - t0), latencies


def section_serve(bench: Bench) -> list[Figure]:
    """Section 8: imgclf serve's requests/s and p50/p95 latency at 1, 8 and 32 concurrent
    clients vs decoding and predicting one image at a time in this process."""
    total = SERVE_REQUESTS_QUICK if bench.quick else SERVE_REQUESTS
    files = [p for paths in class_files(mirror_dir()).values() for p in paths[:16]]
    photos = [p.read_bytes() for p in files]
    bodies = [multipart(p.name, data) for p, data in zip(files, photos, strict=True)]
    model, size = serve_model(bench)
    log(f"serve: direct calls, {total} images of {size} px")
    direct_rate, direct_lat = direct_calls(model, photos, size, total)
    d50, d95 = percentile(direct_lat, 50) * 1000, percentile(direct_lat, 95) * 1000
    figures = []
    with serving(model, model.parent) as address:
        load_level(address, bodies, max(SERVE_CLIENTS), 2 * max(SERVE_CLIENTS))  # warm-up
        for clients in SERVE_CLIENTS:
            log(f"serve: {total} requests from {clients} concurrent clients")
            rate, lat = load_level(address, bodies, clients, total)
            p50, p95 = percentile(lat, 50) * 1000, percentile(lat, 95) * 1000
            figures += [
                Figure("8 serve", f"{clients} clients: throughput", rate, direct_rate, "req/s",
                       Target(">=", SERVE_TARGETS[clients]),
                       f"{total} requests of 1 photo; reference: decode + predict one image "
                       "at a time in one process"),
                Figure("8 serve", f"{clients} clients: p50 latency", p50, d50, "ms"),
                Figure("8 serve", f"{clients} clients: p95 latency", p95, d95, "ms"),
            ]
    return figures


# --- section 9: training throughput of each backbone ------------------------------------------


def backbone_rate(arch: str, size: int, batch: int, steps: int) -> tuple[float, int]:
    """(training images/s, backbone parameters) of ``arch``: random weights, every layer training.

    Set up and compiled as the train stage does (``compiled_cnn``), fed ``steps`` batches
    of random pixels from memory, so only the model's compute is timed; one batch is
    fitted first (tracing), as in section 1.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 3, len(x))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)  # in memory already
    model = compiled_cnn(arch, size, 3, steps)
    warm_up(model, ds)
    from imgclf.models.architectures import BACKBONE

    return timed_epoch(model, ds, len(x)), model.get_layer(BACKBONE).count_params()


def section_backbones(bench: Bench) -> list[Figure]:
    """Section 9: each backbone's training images/s beside the default mobilenet_v2's."""
    from imgclf.params import BACKBONES

    size, batch, steps = BACKBONE_RUN[bench.quick]
    archs = BACKBONES_QUICK if bench.quick else BACKBONES
    rates = {}
    for arch in archs:
        log(f"backbones: {arch} at {size} px")
        rates[arch] = backbone_rate(arch, size, batch, steps)
    reference = rates[BACKBONE_REFERENCE][0]
    return [Figure("9 backbones", f"train {arch} {size}px", rate, reference, "img/s",
                   note=f"backbone {params / 1e6:.1f} M parameters; random weights, every layer "
                   f"training, batch {batch}, {steps} steps after 1; reference "
                   f"{BACKBONE_REFERENCE} (alpha 0.5)")
            for arch, (rate, params) in rates.items()]
# --- section 10: encoded TFRecord shards vs raw pixels -----------------------------------------


def folder_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def split_into(raw: Path, out: Path, size: int, encoding: str) -> Path:
    """``split.run`` of ``raw`` at ``size`` px with ``split.encoding: encoding``."""
    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    with quiet_stdout():
        split.run(DataParams(image_size=size), SplitParams(encoding=encoding), raw, out)
    return out


def section_tfrecord(bench: Bench) -> list[Figure]:
    """Section 10: prepared bytes of the default encoding vs the source JPEGs, and training
    images/s from JPEG shards vs raw-pixel shards (the same model, the same run)."""
    import keras

    source = folder_bytes(bench.photos)
    figures = []
    for (arch, size), target in ENCODED_THROUGHPUT_TARGETS.items():
        size = 64 if bench.quick else size
        log(f"tfrecord: splitting {bench.photos} at {size} px as jpeg and raw")
        jpeg = split_into(bench.photos, bench.work / f"jpeg-{size}", size, "jpeg")
        raw = split_into(bench.photos, bench.work / f"raw-{size}", size, "raw")
        for name, out in (("jpeg", jpeg), ("raw", raw)):
            prepared = folder_bytes(out)
            figures.append(Figure("10 tfrecord", f"prepared bytes, {name} {size}px", prepared / 1e6,
                                  source / 1e6, "MB", Target("<=", PREPARED_BYTES_TARGET)
                                  if name == "jpeg" and size == 224 else None,
                                  "vs the source files' bytes"))
        keras.backend.clear_session()
        runs = []
        for out in (jpeg, raw):
            meta, train, _ = shard_datasets(out, bench.batch)
            model = compiled_cnn(arch, meta.image_size, len(meta.class_names), len(train))
            warm_up(model, train)
            runs.append((model, train, meta.counts["train"]))
        repeats = max(2, bench.repeats)
        log(f"tfrecord: {arch} {size}px, {repeats} interleaved epochs from jpeg and raw")
        rates: list[list[float]] = [[], []]
        for _ in range(repeats):  # interleaved, so a busy moment of the machine hits both
            for i, (model, train, n) in enumerate(runs):
                rates[i].append(timed_epoch(model, train, n))
        figures.append(Figure("10 tfrecord", f"train {arch} {size}px, jpeg vs raw shards",
                              max(rates[0]), max(rates[1]), "img/s", Target(">=", target),
                              f"best of {repeats} interleaved epochs each, after a 2-batch "
                              "warm-up"))
        shutil.rmtree(jpeg)
        shutil.rmtree(raw)
    return figures


# --- section 11: split at scale ------------------------------------------------------------------


def scale_run(bench: Bench, raw: Path, tag: str) -> tuple[ChildRun, int]:
    """``imgclf split`` of ``raw`` with the repo's params (its size, the default encoding) in
    a child process: the run (with peak RSS) and the prepared folder's bytes."""
    work = bench.work / f"scale-{tag}"
    work.mkdir()
    params = bench.repo_params()
    if bench.quick:
        params = merge(params, {"data": {"image_size": 64}})
    write_params(work / "params.yaml", params)
    log(f"scale: imgclf split of {tag} images")
    run = run_child(imgclf_cmd("split", "--params", str(work / "params.yaml"), "--raw", str(raw),
                               "--out", "prepared"), work, poll_s=0.1, what="imgclf split")
    prepared = folder_bytes(work / "prepared")
    shutil.rmtree(work)
    return run, prepared


def section_scale(bench: Bench) -> list[Figure]:
    """Section 11: split of ``--scale-n`` generated images vs the 3,000 photos: images/s,
    peak RSS and prepared bytes / source bytes, so the growth of each cost is visible."""
    small = copy_subset(mirror_dir(), bench.work / "scale-photos", 100) if bench.quick \
        else mirror_dir()
    n_small = count_images(small)
    copies = max(1, -(-bench.scale_n // n_small))
    log(f"scale: generating {copies} variants of each of {n_small} photos")
    large = make_variants(small, bench.work / "scale-variants", copies)
    n_large = count_images(large)
    figures = []
    results = {}
    for tag, raw, n in (("small", small, n_small), ("large", large, n_large)):
        run, prepared = scale_run(bench, raw, str(n))
        results[tag] = (run, prepared, folder_bytes(raw), n)
    (a, pa, sa, na), (b, pb, sb, nb) = results["small"], results["large"]
    figures.append(Figure("11 scale", f"split img/s, {nb} vs {na} images", nb / b.seconds,
                          na / a.seconds, "img/s", None,
                          f"{b.seconds:.0f} s vs {a.seconds:.0f} s, all cores"))
    figures.append(Figure("11 scale", f"split peak RSS, {nb} vs {na} images", b.peak_rss_mb,
                          a.peak_rss_mb, "MB", Target("<=", SCALE_MEMORY_TARGET),
                          f"without shared/file pages {b.peak_private_mb:.0f} vs "
                          f"{a.peak_private_mb:.0f} MB"))
    for n, prepared, source in ((nb, pb, sb), (na, pa, sa)):
        figures.append(Figure("11 scale", f"prepared / source bytes, {n} images",
                              prepared / 1e6, source / 1e6, "MB",
                              Target("<=", PREPARED_BYTES_TARGET) if not bench.quick else None,
                              f"{prepared / n / 1e3:.1f} KB prepared per image"))
    return figures


# --- main -------------------------------------------------------------------------------------


SECTION_FUNCS: dict[str, Callable[[Bench], list[Figure]]] = {
    "throughput": section_throughput, "overhead": section_overhead, "split": section_split,
    "incremental": section_incremental, "memory": section_memory, "tta": section_tta,
    "export": section_export,
    "serve": section_serve,
    "backbones": section_backbones,
    "tfrecord": section_tfrecord, "scale": section_scale,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (64 px, a few photos a class): checks the mechanics only")
    p.add_argument("--json-out", type=Path, help="also write the final JSON object here")
    p.add_argument("--only", type=parse_sections, default=list(SECTIONS),
                   help=f"comma-separated sections to run, of {','.join(SECTIONS)}")
    p.add_argument("--params", type=Path, nargs="+", default=list(DEFAULT_PARAMS),
                   help="params files (full, or recipes that change some keys of params.yaml) "
                   "whose full repro section 6 times, one row pair each")
    p.add_argument("--repeats", type=int, default=1,
                   help="best of N measurements in sections 1-3 (2 at least in section 2)")
    p.add_argument("--archs", type=lambda s: tuple(s.split(",")), default=ARCHS,
                   help="architectures of section 1")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE,
                   help="the peer baseline script")
    p.add_argument("--tmp", type=Path, help="where scratch data goes (default: system temp)")
    p.add_argument("--scale-n", type=int, default=SCALE_N,
                   help="images generated for section 11 (fewer runs in minutes)")
    return p.parse_args(argv)


def run_sections(bench: Bench, sections: Sequence[str]) -> tuple[list[Figure], dict[str, str]]:
    """Run each section; one that fails is reported and the others still run."""
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    for name in sections:
        try:
            new = SECTION_FUNCS[name](bench)
        except Exception as exc:  # a failed section must not lose the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name}: FAILED: {exc}")
            continue
        figures += new
        print(format_table(new), file=sys.stderr, flush=True)
    return figures, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for path in (args.baseline, *args.params):
        if not path.is_file():
            raise SystemExit(f"bench: {path}: not found")
    info = {"quick": args.quick, "sections": args.only, "cpus": len(os.sched_getaffinity(0)),
            "load_avg_at_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-", dir=args.tmp) as tmp:
        bench = Bench(quick=args.quick, work=Path(tmp), baseline=args.baseline,
                      repeats=max(1, args.repeats), archs=args.archs,
                      params_files=[p.resolve() for p in args.params], scale_n=args.scale_n)
        figures, errors = run_sections(bench, args.only)
    info["seconds"] = round(time.perf_counter() - _T0, 1)
    result = summary(figures, errors, info)
    print(format_table(figures))
    line = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(line + "\n", encoding="utf-8")
    print(line)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
