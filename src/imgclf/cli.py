"""The ``imgclf`` command: one subcommand per pipeline stage, as ``dvc.yaml`` calls them.

User errors (bad params, bad data, missing files) end with one line on stderr and
exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

from imgclf import __version__, env, pr_report, summary
from imgclf.errors import UserError
from imgclf.evaluation.folder import FOLDER_METRICS, FOLDER_PLOTS, FOLDER_PREDICTIONS
from imgclf.inference.options import BATCH_SIZE, FORMATS, TOP_K
from imgclf.params import Params, Tta, load_params
from imgclf.serving.settings import DEFAULTS, ENV_PREFIX, ServeSettings, option

MODEL, PREPARED = "models/model.keras", "data/prepared"  # the train and split stages' outputs
STAGE_METRICS, STAGE_PLOTS = "metrics/eval.json", "metrics/plots"
STAGE_GALLERY = "metrics/gallery/misclassified.png"  # as dvc.yaml's evaluate passes it
STAGE_PREDICTIONS = "metrics/predictions.csv"  # likewise

DESCRIPTION = """\
A DVC-versioned image-classification pipeline. The stages run in this order
(`dvc repro` runs them for you and skips those whose inputs did not change):

  source      fingerprint data.source into data/source.json (runs every time; cheap)
  download    fetch the dataset named by data.source into data/raw
  pretrained  fetch the backbone's pinned ImageNet weights into data/pretrained
  split       decode, de-duplicate and split data/raw into data/prepared
              (applying overrides.yaml)
  audit       likely label errors, outliers, leaks and bad images into metrics/data_audit
  features    run the frozen part of a pretrained backbone once into data/features
  train       train the model chosen in params.yaml into models/model.keras
  evaluate    score the model on the held-out splits into metrics/eval.json
  export      write the model as SavedModel, LiteRT and ONNX into models/export, each
              scored against it into metrics/export.json
  ood         measure the unknown-input score (leave one class out, generated images)
              into metrics/ood.json

and, beside the pipeline:

  predict     classify image files and folders with the trained model
  serve       an HTTP API and a web page that classify uploaded photos
  report      compare params, metrics and plots with a git revision (--base main)
  recipe      print a recipe file's params as dvc exp run flags (make scratch)
  tune        search params within a budget, every trial a DVC experiment

`imgclf evaluate --data FOLDER` scores the model on any folder of class sub-folders.

Every choice lives in params.yaml; docs/params.md explains each key, and
docs/pipeline.md what each stage reads and writes (README.md links every page).
"""


# Each command validates params.yaml before importing its stage: a typo is reported
# at once, without waiting for (or being buried under the logs of) TensorFlow's import.


def _source(args: argparse.Namespace) -> None:
    data = load_params(args.params).data
    from imgclf.data import fingerprint

    fingerprint.run(data, args.out)


def _download(args: argparse.Namespace) -> None:
    data = load_params(args.params).data
    from imgclf.data import download

    download.run(data, args.out, timeout=args.timeout)


def _pretrained(args: argparse.Namespace) -> None:
    model = load_params(args.params).model
    from imgclf.models import pretrained

    pretrained.run(model, args.out)


def _split(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from imgclf.data import split

    split.run(params.data, params.split, args.raw, args.out, report_dir=args.report_dir or None,
              overrides=args.overrides or None)


def _audit(args: argparse.Namespace) -> None:
    if args.accept:
        from imgclf.audit.accept import accept  # edits overrides.yaml; no stage runs it

        accept(args.accept, args.top, Path(args.out) / "findings", args.overrides)
        return
    params = load_params(args.params)
    from imgclf.audit import stage
    from imgclf.audit.findings import COLUMNS
    from imgclf.tracking.wandb_run import Tracker

    with Tracker.start(params, "audit") if params.audit.enabled else (
            Tracker.disabled("audit")) as tracker:
        found = stage.run(params.audit, args.data, args.features, args.out,
                          raw=args.raw or None)
        tracker.log_summary({"audit": found.counts})
        tracker.log_tables("audit", found.tables, COLUMNS)


# Train and evaluate are tracked in Weights & Biases when params.yaml's wandb section
# allows it; the tracker never fails a stage (see imgclf.tracking.wandb_run).


def _train(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from imgclf.tracking.wandb_run import Tracker
    from imgclf.training import distribute, train

    # Of the processes of a multi-worker run only the chief makes a W&B run.
    chief = distribute.is_chief(params.train.strategy)
    with Tracker.start(params, "train") if chief else Tracker.disabled("train") as tracker:
        trained = train.run(params.model, params.train, args.data, args.model, args.live,
                            args.pretrained, callbacks=[tracker.callback()],
                            features=args.features or None, ood=params.ood)
        if trained is not None:
            tracker.log_artifact(args.model, "model", metadata=trained.model)
            tracker.log_artifact(Path(args.data) / "manifest.csv", "dataset",
                                 metadata=trained.counts)


def _features(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from imgclf.training import features
    from imgclf.training.distribute import is_chief

    # A multi-worker chief writes data/features unless told otherwise; another worker
    # writes a copy only where --out says (its own node's project), else just computes.
    out = args.out if args.out is not None else (
        "data/features" if is_chief(params.train.strategy) else None)
    features.run(params.model, params.train.fine_tune.layers, params.train.augment.flip,
                 args.data, args.pretrained, out or None, strategy=params.train.strategy)


def _recipe(args: argparse.Namespace) -> None:
    from imgclf.recipe import set_param_flags

    print(" ".join(set_param_flags(args.recipe, args.params)))


def _duration(text: str) -> float:
    """``20m``, ``90s``, ``1h`` or plain seconds, as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 20m, 90s "
                                         "or 1h") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0")
    return seconds


def _tune(args: argparse.Namespace) -> int:
    load_params(args.params)  # a bad params.yaml stops here, before any trial
    from imgclf.tuning import study

    opts = study.Options(Path.cwd(), Path(args.space), args.study, args.trials, args.time,
                         args.jobs, args.pruner, args.seed, args.params, args.apply)
    return study.apply_best(opts) if args.apply else study.run(opts)


def _params_or_defaults(path: str) -> Params:
    """The params file for commands usable outside a project: the defaults if it is missing."""
    return load_params(path) if Path(path).exists() else Params()


def _evaluate(args: argparse.Namespace) -> None:
    data = Path(args.data)
    if data.is_dir() and not (data / "meta.json").exists():
        # Not a prepared split: a folder of class sub-folders, scored outside the pipeline
        # (untracked, and into its own outputs so the stage's committed ones stay as
        # they are).
        _evaluate_folder(args)
        return
    params = load_params(args.params)
    from imgclf.evaluation import evaluate
    from imgclf.tracking.wandb_run import Tracker

    with Tracker.start(params, "evaluate") as tracker:
        scored = evaluate.run(params.evaluate, args.data, args.model,
                              args.metrics or STAGE_METRICS, args.plots or STAGE_PLOTS,
                              args.gallery, args.predictions or STAGE_PREDICTIONS,
                              allow_unsafe_model=args.allow_unsafe_model,
                              unknown_threshold=params.ood.threshold)
        tracker.log_summary(scored.metrics)
        tracker.log_test_results(scored.images, scored.y_true, scored.probs,
                                 scored.class_names, scored.curves, scored.mistakes)


def _evaluate_folder(args: argparse.Namespace) -> None:
    # A function of its own, so the evaluate stage's deps leave out the code it runs.
    params = _params_or_defaults(args.params)
    from imgclf.evaluation import folder

    folder.run_folder(params.evaluate, args.data, args.model, args.metrics or FOLDER_METRICS,
                      args.plots or FOLDER_PLOTS, args.predictions or FOLDER_PREDICTIONS,
                      allow_unsafe_model=args.allow_unsafe_model,
                      unknown_threshold=params.ood.threshold)


def _export(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from imgclf.export import stage

    stage.run(params.export, args.data, args.model, args.out, args.metrics, ood=params.ood)


def _ood(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from imgclf.evaluation import loco

    loco.run(params.ood, args.features, args.data, args.model, args.metrics)


def _tta(args: argparse.Namespace) -> Tta:
    # Score as the evaluate stage does, so its metrics describe these answers.
    return getattr(args, "tta", None) or _params_or_defaults(args.params).evaluate.tta


def _unknown_threshold(args: argparse.Namespace) -> float | None:
    # --unknown-threshold, else ood.threshold of --params, else (None) the model file's.
    given = getattr(args, "unknown_threshold", None)
    return given if given is not None else _params_or_defaults(args.params).ood.threshold


def _predict(args: argparse.Namespace) -> int:
    from imgclf.inference import predict

    return predict.run(args.paths, args.model, top_k=args.top_k, batch_size=args.batch_size,
                       fmt=args.format, output=args.output,
                       allow_unsafe_model=args.allow_unsafe_model, tta=_tta(args),
                       unknown_threshold=_unknown_threshold(args),
                       explain=args.explain)


def _serve(args: argparse.Namespace) -> None:
    # The options given; the others come from IMGCLF_SERVE_* or the defaults.
    given = {name: getattr(args, name) for name in ServeSettings.model_fields if name in args}
    settings = ServeSettings.load(**given)
    from imgclf.serving import server
    from imgclf.serving.report import ReportFiles

    report_files = ReportFiles(Path(args.metrics), Path(args.plots), Path(args.gallery))
    server.run(args.model, report_files, settings, tta=_tta(args),
               allow_unsafe_model=args.allow_unsafe_model,
               unknown_threshold=_unknown_threshold(args))


# --- the parser: one line per option; the docs pages say the rest ---------------------------

Command = Callable[[argparse.Namespace], int | None]
SERVE_METAVARS = {"host": "HOST", "port": "PORT", "max_upload_mb": "MB", "batch_window_ms": "MS"}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, but for flags and options whose help says
    what their absence means (default None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _command(sub: argparse._SubParsersAction, name: str, func: Command, help: str,
             description: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description, formatter_class=_Formatter)
    p.set_defaults(func=func)
    return p


def _add_params(p: argparse.ArgumentParser, help: str = "the params file to read") -> None:
    p.add_argument("--params", default="params.yaml", metavar="FILE", help=help)


def _add_data(p: argparse.ArgumentParser, help: str = "the split stage's output") -> None:
    p.add_argument("--data", default=PREPARED, metavar="DIR", help=help)


def _add_model(p: argparse.ArgumentParser, help: str = "the model: a .keras, .tflite or "
               ".onnx file or a SavedModel folder") -> None:
    p.add_argument("--model", default=MODEL, metavar="PATH", help=help)


def _add_tta(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tta", choices=get_args(Tta), default=argparse.SUPPRESS,
                   help="test-time augmentation (default: evaluate.tta of --params)")
    p.add_argument("--unknown-threshold", type=float, default=None, metavar="SCORE",
                   help="flag an image unknown (none of the classes) above this OOD score "
                   "(default: ood.threshold of --params, else the one fitted for the model "
                   "file; docs/ood.md)")
    _add_params(p, "the params file --tta and --unknown-threshold default from (built-in "
                "defaults if missing)")


def _add_unsafe_flag(p: argparse.ArgumentParser) -> None:
    # Off by default, and dvc.yaml never passes it: the pipeline must not run code that
    # arrives inside a model file.
    p.add_argument("--allow-unsafe-model", action="store_true",
                   help="load a model file that carries Python code; only one you trust")


def _add_fetch_stages(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "source", _source, "fingerprint data.source, so dvc repro sees a "
                 "changed folder", "Fingerprint what data.source names into --out; it runs "
                 "on every dvc repro, and download reruns only when the fingerprint "
                 "changes. See docs/pipeline.md.")
    _add_params(p)
    p.add_argument("--out", default="data/source.json", help="where the fingerprint goes")

    p = _command(sub, "download", _download, "fetch the dataset into data/raw",
                 "Fetch the dataset of data.source into --out/<class>/<file>, verified "
                 "against its pinned checksums. Sources: docs/params.md (data.source); "
                 "mirrors and timeouts: docs/your-data.md.")
    _add_params(p)
    p.add_argument("--out", default="data/raw", help="where the class folders are written")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up after this long without data from the server (default: "
                   "$IMGCLF_HTTP_TIMEOUT, else 60)")

    p = _command(sub, "pretrained", _pretrained, "fetch the pinned ImageNet weights of the "
                 "backbone", "Put the ImageNet weights model.arch starts from into --out, "
                 "from Keras' cache or URL, checked against Keras' pinned hash. See "
                 "docs/pipeline.md.")
    _add_params(p)
    p.add_argument("--out", default="data/pretrained", help="where the weights file goes")


def _add_training_stages(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "split", _split, "decode, de-duplicate and split the images",
                 "Decode, de-duplicate and split --raw into shards, a manifest and the data "
                 "report. See docs/pipeline.md and docs/error-analysis.md.")
    _add_params(p)
    p.add_argument("--raw", default="data/raw", help="the folder of class sub-folders")
    p.add_argument("--out", default=PREPARED, help="where shards and manifest go")
    p.add_argument("--report-dir", default="metrics/data_report",
                   help="where the data report's pictures go; '' for none")
    p.add_argument("--overrides", default="overrides.yaml", help="the files to exclude or "
                   "relabel (docs/audit.md); a missing file or '' changes nothing")

    p = _command(sub, "audit", _audit, "find likely label errors, outliers, leaks and bad "
                 "images", "Audit the prepared images with the features stage's embeddings "
                 "into --out (counts.json, findings/, grids/); with --accept, write the first "
                 "--top suggestions of one finding type into --overrides instead, for review "
                 "in a git diff. See docs/audit.md.")
    _add_params(p)
    _add_data(p)
    p.add_argument("--features", default="data/features", help="the features stage's output")
    p.add_argument("--raw", default="data/raw", help="the original files (their sizes); '' "
                   "to skip the size checks")
    p.add_argument("--out", default="metrics/data_audit", help="where the findings go")
    p.add_argument("--accept", default=None, metavar="KIND", help="label_issues, outliers, "
                   "leaks or quality: add their suggestions to --overrides")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="with --accept, how many of its first rows to add")
    p.add_argument("--overrides", default="overrides.yaml", help="the overrides file --accept "
                   "edits")

    p = _command(sub, "features", _features, "run the frozen backbone layers once",
                 "Run every train image (and its mirror, with train.augment.flip) and val "
                 "image once through the layers of the pretrained backbone that training "
                 "never changes, into --out, and the mirror-averaged embedding of every "
                 "train, val and test image. See docs/pipeline.md and docs/training.md.")
    _add_params(p)
    _add_data(p)
    p.add_argument("--pretrained", default="data/pretrained",
                   help="the pretrained stage's output")
    p.add_argument("--out", default=None,
                   help="where the feature set goes (default data/features; under "
                        "multi_worker a worker other than the chief writes only if given)")

    p = _command(sub, "train", _train, "train the model",
                 "Train model.* with train.* on the train split, validating on the val "
                 "split. See docs/pipeline.md and docs/training.md.")
    _add_params(p)
    _add_data(p)
    _add_model(p, "where the model is saved")
    p.add_argument("--live", default="metrics/train", help="the DVCLive folder")
    p.add_argument("--pretrained", default="data/pretrained",
                   help="the pretrained stage's output")
    p.add_argument("--features", default="data/features",
                   help="the features stage's output; '' to run the whole model on the images")


def _add_scoring_stages(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "evaluate", _evaluate, "score the model on the held-out splits",
                 "Score the model on evaluate.splits into metrics and plots "
                 "(docs/error-analysis.md); --data FOLDER scores a folder of class "
                 "sub-folders instead, untracked (docs/predict.md).")
    _add_params(p)
    _add_data(p, "the split stage's output, or a folder of class sub-folders")
    _add_model(p)
    p.add_argument("--metrics", default=None, help=f"the metrics file (default: "
                   f"{STAGE_METRICS}; for a folder, {FOLDER_METRICS})")
    p.add_argument("--plots", default=None, help=f"the folder of plots (default: "
                   f"{STAGE_PLOTS}; for a folder, {FOLDER_PLOTS})")
    p.add_argument("--gallery", default=None, help="the picture of the most confident "
                   "mistakes (default: in the plots folder)")
    p.add_argument("--predictions", default=None, help=f"the CSV of each image's true and "
                   f"predicted class and probabilities (default: {STAGE_PREDICTIONS}; for a "
                   f"folder, {FOLDER_PREDICTIONS})")
    _add_unsafe_flag(p)

    p = _command(sub, "export", _export, "write the model in deployable formats, each one "
                 "verified", "Write the model in each format of export.formats into --out, "
                 "and each one's scores beside the Keras model's into --metrics. See "
                 "docs/export.md.")
    _add_params(p)
    _add_data(p)
    _add_model(p, "the .keras model to export")
    p.add_argument("--out", default="models/export", help="the folder the formats go to")
    p.add_argument("--metrics", default="metrics/export.json", help="the metrics file")

    p = _command(sub, "ood", _ood, "measure how well the model tells images of no known "
                 "class", "Score the OOD detector: leave-one-class-out on the features "
                 "stage's embeddings, generated out-of-domain images against the test split, "
                 "and the keep-rate check, into --metrics. See docs/ood.md.")
    _add_params(p)
    _add_data(p)
    _add_model(p, "the .keras model")
    p.add_argument("--features", default="data/features", help="the features stage's output")
    p.add_argument("--metrics", default="metrics/ood.json", help="the metrics file")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "predict", _predict, "classify image files and folders with the "
                 "trained model", "Classify image files, and those in folders "
                 "(recursively), prepared as for training. Exit status 1 when a file could "
                 "not be read, 2 for a usage error. See docs/predict.md.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    _add_model(p)
    p.add_argument("--top-k", type=int, default=TOP_K, metavar="N",
                   help="classes listed per image (at most all)")
    p.add_argument("--format", choices=FORMATS, default=FORMATS[0],
                   help="table for people; csv or json for programs")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="write the results there instead of to standard output")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="N",
                   help="images per model call")
    p.add_argument("--explain", default=None, metavar="DIR",
                   help="also write each image beside its predicted class's heatmap "
                   "(Grad-CAM family) as a PNG into DIR; needs a .keras model")
    _add_tta(p)
    _add_unsafe_flag(p)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "serve", _serve, "an HTTP API and a web page that classify uploaded "
                 "photos", "Serve the model over HTTP: POST /predict answers with the JSON "
                 "of imgclf predict, / is a web page, /docs describes the API. With "
                 f"{ENV_PREFIX}TOKEN set, requests need that bearer token. The options "
                 f"from --top-k on can be set as {ENV_PREFIX}<OPTION> too. See "
                 "docs/serve.md.")
    _add_model(p)
    for name, field in ServeSettings.model_fields.items():
        if name != "token":  # from the environment only
            # SUPPRESS: an option not given is left to the environment, then the default.
            p.add_argument(option(name), type=field.annotation, default=argparse.SUPPRESS,
                           metavar=SERVE_METAVARS.get(name, "N"),
                           help=f"{field.description} (default: {getattr(DEFAULTS, name)})")
    _add_tta(p)
    p.add_argument("--metrics", default=STAGE_METRICS, help="the report's metrics file")
    p.add_argument("--plots", default=STAGE_PLOTS, help="the report's folder of plots")
    p.add_argument("--gallery", default=STAGE_GALLERY,
                   help="the report's picture of the most confident mistakes")
    _add_unsafe_flag(p)


def _add_recipe(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "recipe", _recipe, "print a recipe file's params as dvc exp run -S "
                 "flags", "Print '-S key=value' for each param a recipe file sets, once "
                 "params.yaml with them is valid: flags=$(imgclf recipe FILE) && dvc exp "
                 "run $flags. See docs/training.md.")
    _add_params(p)
    p.add_argument("recipe", metavar="FILE", help="the recipe file")


def _add_tune(sub: argparse._SubParsersAction) -> None:
    from imgclf.tuning.study import TUNE_DIR

    p = _command(sub, "tune", _tune, "search params within a budget, every trial a DVC "
                 "experiment", "Run an Optuna study over the search space --space: each "
                 "trial is `dvc exp run -n STUDY-N -S ...` up to the train stage, scored on "
                 "val accuracy, pruned early when it falls behind. The study lives in "
                 f"{TUNE_DIR}/STUDY/ and a second run continues it; --apply writes the best "
                 "trial's params into params.yaml. See docs/tuning.md.")
    _add_params(p)
    p.add_argument("--space", default="recipes/tune.yaml", metavar="FILE",
                   help="the search space")
    p.add_argument("--study", default="tune", metavar="NAME",
                   help="the study (its experiments are NAME-0, NAME-1, ...)")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="run at most N new trials (default: as many as --time allows)")
    p.add_argument("--time", type=_duration, default=None, metavar="DURATION",
                   help="start no trial the time left would not hold, e.g. 20m")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="trials in parallel through the DVC queue")
    p.add_argument("--pruner", choices=("median", "halving"), default="median",
                   help="stop trials whose val accuracy falls behind: the median rule or "
                   "successive halving")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--apply", action="store_true",
                   help="write the best trial's params into --params, run nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_fetch_stages(sub)
    _add_training_stages(sub)
    _add_scoring_stages(sub)
    _add_predict(sub)
    _add_serve(sub)
    pr_report.add_parser(sub)
    _add_recipe(sub)
    _add_tune(sub)
    summary.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    env.prepare()  # blanks unset, .env read, TensorFlow's C++ chatter out (imgclf.env)
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"imgclf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imgclf {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0
