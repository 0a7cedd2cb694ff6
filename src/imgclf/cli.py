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

from imgclf import __version__, env, report, summary
from imgclf.data.layout import IMAGE_SUFFIXES
from imgclf.errors import UserError
from imgclf.params import Params, Tta, load_params
from imgclf.serving import defaults as serve

STAGE_METRICS, STAGE_PLOTS = "metrics/eval.json", "metrics/plots"
STAGE_GALLERY = "metrics/gallery/misclassified.png"  # as dvc.yaml's evaluate passes it
# Where `imgclf evaluate --data FOLDER` writes (as imgclf.evaluation.evaluate says, which
# the CLI does not import before it runs).
FOLDER_METRICS, FOLDER_PLOTS = "metrics/folder/eval.json", "metrics/folder/plots"

DESCRIPTION = """\
A DVC-versioned image-classification pipeline. The stages run in this order
(`dvc repro` runs them for you and skips those whose inputs did not change):

  source      fingerprint data.source into data/source.json (runs every time; cheap)
  download    fetch the dataset named by data.source into data/raw
  pretrained  fetch the backbone's pinned ImageNet weights into data/pretrained
  split       decode, de-duplicate and split data/raw into data/prepared
  train       train the model chosen in params.yaml into models/model.keras
  evaluate    score the model on the held-out splits into metrics/eval.json
  export      write the model as SavedModel, LiteRT and ONNX into models/export, each
              scored against it into metrics/export.json

and, beside the pipeline:

  predict     classify image files and folders with the trained model
  serve       an HTTP API and a web page that classify uploaded photos
  report      compare params, metrics and plots with a git revision (--base main)
  recipe      print a recipe file's params as dvc exp run flags (make scratch)

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

    split.run(params.data, params.split, args.raw, args.out, report_dir=args.report_dir or None)


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
                            args.pretrained, callbacks=[tracker.callback()])
        if trained is not None:
            tracker.log_artifact(args.model, "model", metadata=trained.model)
            tracker.log_artifact(Path(args.data) / "manifest.csv", "dataset",
                                 metadata=trained.counts)


def _recipe(args: argparse.Namespace) -> None:
    from imgclf.recipe import set_param_flags

    print(" ".join(set_param_flags(args.recipe, args.params)))


def _params_or_defaults(path: str) -> Params:
    """The params file for commands usable outside a project: the defaults if it is missing."""
    return load_params(path) if Path(path).exists() else Params()


def _evaluate(args: argparse.Namespace) -> None:
    data = Path(args.data)
    if data.is_dir() and not (data / "meta.json").exists():
        # Not a prepared split: a folder of class sub-folders, scored outside the pipeline
        # (untracked, and into its own outputs so the stage's committed ones stay as
        # they are).
        params = _params_or_defaults(args.params)
        from imgclf.evaluation import evaluate

        evaluate.run_folder(params.evaluate, data, args.model, args.metrics or FOLDER_METRICS,
                            args.plots or FOLDER_PLOTS, allow_unsafe_model=args.allow_unsafe_model)
        return
    params = load_params(args.params)
    from imgclf.evaluation import evaluate
    from imgclf.tracking.wandb_run import Tracker

    with Tracker.start(params, "evaluate") as tracker:
        scored = evaluate.run(params.evaluate, args.data, args.model,
                              args.metrics or STAGE_METRICS, args.plots or STAGE_PLOTS,
                              args.gallery, allow_unsafe_model=args.allow_unsafe_model)
        tracker.log_summary(scored.metrics)
        tracker.log_test_results(scored.images, scored.y_true, scored.probs,
                                 scored.class_names, scored.curves, scored.mistakes)


def _export(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from imgclf.export import stage

    stage.run(params.export, args.data, args.model, args.out, args.metrics)


def _predict(args: argparse.Namespace) -> int:
    from imgclf.inference import predict

    # Score as the evaluate stage does, so its metrics describe these answers.
    tta = getattr(args, "tta", None) or _params_or_defaults(args.params).evaluate.tta
    return predict.run(args.paths, args.model, top_k=args.top_k, batch_size=args.batch_size,
                       fmt=args.format, output=args.output,
                       allow_unsafe_model=args.allow_unsafe_model, tta=tta)


def _serve(args: argparse.Namespace) -> None:
    from imgclf.serving import server
    from imgclf.serving.report import ReportFiles

    tta = getattr(args, "tta", None) or _params_or_defaults(args.params).evaluate.tta
    report_files = ReportFiles(Path(args.metrics), Path(args.plots), Path(args.gallery))
    top_k = {"top_k": args.top_k} if "top_k" in args else {}  # else predict's default
    server.run(args.model, report_files, host=args.host, port=args.port, tta=tta,
               max_upload_mb=args.max_upload_mb, max_files=args.max_files,
               batch_images=args.batch_images, batch_window_ms=args.batch_window_ms,
               allow_unsafe_model=args.allow_unsafe_model, **top_k)


def _add_unsafe_flag(p: argparse.ArgumentParser) -> None:
    # Off by default, and dvc.yaml never passes it: the pipeline must not run code that
    # arrives inside a model file.
    p.add_argument("--allow-unsafe-model", action="store_true",
                   help="load a model file that carries Python code (e.g. a Lambda layer), "
                   "which runs on loading; refused otherwise. Only for files you trust")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int | None], help: str,
            description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--params", default="params.yaml", help="the params file to read")
        p.set_defaults(func=func)
        return p

    p = add("source", _source, "fingerprint data.source, so dvc repro sees a changed folder",
            "Write a fingerprint of what data.source names to OUT, for the download stage to "
            "depend on: DVC cannot look into a folder outside the repository, so this stage "
            "runs on every dvc repro and download reruns only when the fingerprint changes. "
            "What it covers for each kind of source: docs/pipeline.md.")
    p.add_argument("--out", default="data/source.json", help="where the fingerprint goes")

    p = add("download", _download, "fetch the dataset into data/raw",
            "Fetch the dataset named by data.source into OUT/<class>/<file>, looking first in "
            "the folder named by $IMGCLF_DATA_MIRROR; files of a known dataset are verified "
            "against its pinned sha256 manifest. Sources: docs/params.md (data.source); "
            "mirrors and timeouts: docs/your-data.md.")
    p.add_argument("--out", default="data/raw", help="where the class folders are written")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="how long the server may stay silent (on connecting, or in the "
                   "middle of the transfer) before the download gives up; default "
                   "$IMGCLF_HTTP_TIMEOUT, else 60")

    p = add("pretrained", _pretrained, "fetch the pinned ImageNet weights of the backbone",
            "Put the ImageNet weights that model.arch starts from (model.pretrained) into OUT, "
            "verified against the hash Keras pins for the file: from Keras' cache "
            "$KERAS_HOME/models/ (default ~/.keras/models/) if there, else from Keras' "
            "official URL. For a model trained from scratch it writes a note instead. See "
            "docs/pipeline.md.")
    p.add_argument("--out", default="data/pretrained", help="where the weights file goes")

    p = add("split", _split, "decode, de-duplicate and split the images",
            "Decode every image of RAW (skipping and reporting unusable files), group "
            "copies of one picture (split.near_duplicates), make a stratified split from "
            "split.* and "
            "write the resized images as binary shards plus a manifest and the data report "
            "(report.json) into OUT, and the report's pictures into REPORT_DIR. See "
            "docs/pipeline.md and docs/error-analysis.md.")
    p.add_argument("--raw", default="data/raw", help="the folder of class sub-folders")
    p.add_argument("--out", default="data/prepared", help="where shards and manifest go")
    p.add_argument("--report-dir", default="metrics/data_report",
                   help="where the data report's pictures go (class balance, image sizes, "
                   "samples of each class); '' for none")

    p = add("train", _train, "train the model",
            "Train the architecture of model.* with the settings of train.* on the prepared "
            "train split, validating on the val split; log learning curves with DVCLive and "
            "save the model with its class names. See docs/training.md.")
    p.add_argument("--data", default="data/prepared", help="the split stage's output")
    p.add_argument("--model", default="models/model.keras", help="where the model is saved")
    p.add_argument("--live", default="metrics/train", help="the DVCLive folder")
    p.add_argument("--pretrained", default="data/pretrained",
                   help="the pretrained stage's output")

    p = add("evaluate", _evaluate, "score the model on the held-out splits",
            "Score the model on the splits of evaluate.splits and write the metrics (nested "
            "by split) and the plots of the test split (docs/error-analysis.md). With --data "
            "FOLDER, a folder of class sub-folders instead of the split stage's output, it "
            "scores those images and writes the same metrics, nested under 'folder', and "
            "plots, untracked (docs/predict.md).")
    p.add_argument("--data", default="data/prepared",
                   help="the split stage's output, or a folder of class sub-folders")
    p.add_argument("--model", default="models/model.keras",
                   help="the model to score: a .keras, .tflite or .onnx file, or a SavedModel "
                   "folder")
    p.add_argument("--metrics", default=None,
                   help=f"the metrics file (default {STAGE_METRICS}; {FOLDER_METRICS} for a "
                   "folder of class sub-folders)")
    p.add_argument("--plots", default=None,
                   help=f"the folder of plots (default {STAGE_PLOTS}; {FOLDER_PLOTS} for a "
                   "folder of class sub-folders)")
    p.add_argument("--gallery", default=None,
                   help="where the picture of the most confident mistakes goes (default: "
                   "inside the plots folder); it shows dataset photos, so the pipeline keeps "
                   "it in the DVC cache, not in git")
    _add_unsafe_flag(p)

    p = add("export", _export, "write the model in deployable formats, each one verified",
            "Write the model of MODEL in each format of export.formats (SavedModel, LiteRT "
            "float16 and int8, ONNX) into OUT; load each file back and score it on the test "
            "split beside the Keras model into METRICS. A format that misses its bound "
            "(export.*) fails the command with one line saying by how much. The formats, "
            "their inputs and the metrics: docs/export.md.")
    p.add_argument("--data", default="data/prepared", help="the split stage's output")
    p.add_argument("--model", default="models/model.keras", help="the .keras model to export")
    p.add_argument("--out", default="models/export", help="the folder the formats go to")
    p.add_argument("--metrics", default="metrics/export.json", help="the metrics file")

    p = sub.add_parser(
        "predict", help="classify image files and folders with the trained model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Classify image files, and the image files "
        f"({' '.join(sorted(IMAGE_SUFFIXES))}, any case; hidden ones skipped) in folders, "
        "recursively, with the "
        "model, preparing them exactly as for training at the image size stored in the model "
        "file. Prints file, predicted class, confidence and the top-k classes. A file that "
        "cannot be read is reported with the reason and the others are still predicted; "
        "the exit status is then 1 (0 when all were predicted, 2 for a usage error). "
        "Output formats and examples: docs/predict.md.")
    p.set_defaults(func=_predict)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    p.add_argument("--model", default="models/model.keras",
                   help="the model: a .keras, .tflite or .onnx file, or a SavedModel folder "
                   "(as imgclf export writes them)")
    p.add_argument("--top-k", type=int, default=3,
                   help="classes listed per image (at most the number of classes)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="table for people; csv or json (one row or object per file, errors "
                   "included) for programs")
    p.add_argument("--output", default=None,
                   help="write the results to this file instead of standard output")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument("--tta", choices=get_args(Tta), default=argparse.SUPPRESS,
                   help="test-time augmentation: flip averages each image with its mirror "
                   "image (default: evaluate.tta of the params file, as the evaluate stage "
                   "scored the model)")
    p.add_argument("--params", default="params.yaml",
                   help="the params file --tta defaults from (built-in defaults if missing)")
    _add_unsafe_flag(p)

    p = sub.add_parser(
        "serve", help="an HTTP API and a web page that classify uploaded photos",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve the model over HTTP: POST /predict takes images as multipart "
        "fields named 'files' and answers with the JSON of 'imgclf predict --format json'; "
        "GET / is a web page to drop photos on and to see the evaluate stage's report; "
        "the OpenAPI page is /docs. Binds 127.0.0.1 unless --host says otherwise; with "
        "IMGCLF_SERVE_TOKEN set, requests need 'Authorization: Bearer <token>'. The API, "
        "its limits and batching: docs/serve.md.")
    p.set_defaults(func=_serve)
    p.add_argument("--model", default="models/model.keras",
                   help="the model: a .keras, .tflite or .onnx file or a SavedModel folder")
    p.add_argument("--host", default=serve.HOST,
                   help="the address to listen on; 0.0.0.0 for every interface")
    p.add_argument("--port", type=int, default=serve.PORT, help="the port; 0 for any free one")
    p.add_argument("--top-k", type=int, default=argparse.SUPPRESS,
                   help="classes per image unless a request asks (?top_k=N); default: "
                   "that of imgclf predict")
    p.add_argument("--tta", choices=get_args(Tta), default=argparse.SUPPRESS,
                   help="test-time augmentation (default: evaluate.tta of the params file)")
    p.add_argument("--params", default="params.yaml",
                   help="the params file --tta defaults from (built-in defaults if missing)")
    p.add_argument("--max-upload-mb", type=float, default=serve.MAX_UPLOAD_MB,
                   help="largest request body; a larger one is refused with 413")
    p.add_argument("--max-files", type=int, default=serve.MAX_FILES,
                   help="most images per request")
    p.add_argument("--batch-images", type=int, default=serve.BATCH_IMAGES,
                   help="most images gathered from concurrent requests into one model call")
    p.add_argument("--batch-window-ms", type=float, default=serve.BATCH_WINDOW_MS,
                   help="how long a batch waits for requests already being received "
                   "(never when there are none)")
    p.add_argument("--metrics", default=STAGE_METRICS, help="the report's metrics file")
    p.add_argument("--plots", default=STAGE_PLOTS,
                   help="the report's folder of plots (confusion.png, calibration.png)")
    p.add_argument("--gallery", default=STAGE_GALLERY,
                   help="the report's picture of the most confident mistakes")
    _add_unsafe_flag(p)
    report.add_parser(sub)

    p = add("recipe", _recipe, "print a recipe file's params as dvc exp run -S flags",
            "Print '-S key=value' for every param a recipe file sets (a YAML file with only "
            "the params that differ from params.yaml, such as recipes/from-scratch.yaml), "
            "after checking that params.yaml with them is valid. Use it as: "
            "flags=$(imgclf recipe recipes/from-scratch.yaml) && dvc exp run $flags "
            "(make scratch does that); the && keeps a bad recipe from running the "
            "default params. See docs/training.md.")
    p.add_argument("recipe", metavar="FILE", help="the recipe file")
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
