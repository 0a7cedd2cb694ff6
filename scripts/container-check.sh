#!/usr/bin/env bash
# make container-check: build the Docker image with podman and check it for real.
#
# Inside the image it runs `imgclf --help`, then `dvc repro` of a tiny generated dataset
# (3 classes x 12 PNGs) with data/, models/, metrics/ and the DVC cache mounted from a
# temporary folder on the host, and checks that the metrics landed on the host. A second
# `dvc repro`, in a fresh container on the same folders, must find every stage up to
# date and run none. As with docker-compose.yml, params.yaml and dvc.lock live on the
# host: here they are copied in and out of the mounted /check folder, as run-in-image.sh
# binds folders only.
#
# Where there is no container registry or `podman run` cannot start containers, the
# helpers of ../shared/container (or $IMGCLF_CONTAINER_TOOLS) build a local stand-in for
# the base image and run commands in the image. Without podman (and without those
# helpers to install it) the check is skipped. Needs root, or rootless podman.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-imgclf:check}
# ../shared/container beside the clone (of the main checkout, from a git worktree)
main_checkout=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null \
                           || echo "$PWD/.git")")
tools=${IMGCLF_CONTAINER_TOOLS:-$(cd "$main_checkout/.." && pwd)/shared/container}
read -r -a build_flags <<<"${PODMAN_BUILD_FLAGS:---isolation=chroot}"

if [ -x "$tools/make-base-image.sh" ] && [ "$(id -u)" = 0 ]; then
  "$tools/make-base-image.sh"   # installs podman if missing; no-op when the base exists
fi
if ! command -v podman >/dev/null; then
  echo "container-check: SKIPPED: podman is not installed"
  exit 0
fi

# in_image [-v HOST:IMAGE]... [-e NAME=VALUE]... -- COMMAND...
if [ -x "$tools/run-in-image.sh" ]; then
  in_image() { "$tools/run-in-image.sh" "$image" "$@"; }
else
  in_image() {
    local opts=()
    while [ "$1" != "--" ]; do opts+=("$1" "$2"); shift 2; done
    shift
    podman run --rm "${opts[@]}" "$image" "$@"
  }
fi

echo "== podman build -t $image ."
podman build "${build_flags[@]}" -t "$image" .

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{check,data,models,metrics,cache}
chmod 755 "$work"
chmod 777 "$work"/{check,data,models,metrics,cache}   # the image's user writes them

# Run in the image: the images, and /check/params.yaml, the image's made tiny.
cat >"$work/check/tiny.py" <<'PY'
import random
from pathlib import Path

import yaml
from PIL import Image

images = Path("/check/images")
rng = random.Random(0)
for name, rgb in {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}.items():
    (images / name).mkdir(parents=True, exist_ok=True)
    for i in range(12):
        path = images / name / f"{name}_{i:02d}.png"
        if not path.exists():
            img = Image.new("RGB", (24, 24))
            img.putdata([tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in rgb)
                         for _ in range(24 * 24)])
            img.save(path)
params = yaml.safe_load(Path("params.yaml").read_text())  # the image's
params["data"].update(source=str(images), image_size=16)
params["split"].update(train=0.6, val=0.2, test=0.2, seed=0)
params["model"].update(arch="small")
params["train"].update(epochs=2, batch_size=8, learning_rate=0.003)
if "wandb" in params:
    params["wandb"]["enabled"] = False
Path("/check/params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
PY

mounts=(-v "$work/check:/check" -v "$work/data:/app/data" -v "$work/models:/app/models"
        -v "$work/metrics:/app/metrics" -v "$work/cache:/app/.dvc/cache"
        -e WANDB_MODE=disabled)
# params.yaml and dvc.lock from the host (as compose mounts them), dvc.lock back after
repro='cp /check/params.yaml params.yaml && { [ ! -f /check/dvc.lock ] || cp /check/dvc.lock .; } &&
       dvc repro && cp dvc.lock /check/dvc.lock'

echo "== in the image: id; imgclf --help"
# shellcheck disable=SC2016  # expanded in the image, not here
in_image -- sh -c 'echo "user $(id -un) (uid $(id -u)) in $(pwd)"; test "$(id -u)" != 0'
in_image -- imgclf --help

echo "== in the image: dvc repro (tiny dataset; data, models, metrics, DVC cache mounted)"
in_image "${mounts[@]}" -- sh -c "python /check/tiny.py && $repro"

echo "== on the host: $work/metrics/eval.json"
python3 - "$work" <<'PY'
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
metrics = json.loads((work / "metrics/eval.json").read_text())
assert 0.0 <= metrics["test"]["accuracy"] <= 1.0, metrics
assert (work / "models/model.keras").is_file()
# Real files on the host: a link would point into the container (/app/.dvc/cache/...).
links = [str(p) for p in work.rglob("*") if p.is_symlink()]
assert not links, f"links on the host: {links[:5]}"
assert any((work / "cache").rglob("*")), "the DVC cache on the host is empty"
print(f"test accuracy {metrics['test']['accuracy']}, test n {metrics['test']['n']}")
PY

echo "== in a fresh container: dvc repro again on the same folders"
out=$(in_image "${mounts[@]}" -- sh -c "$repro" 2>&1)
echo "$out"
# `source` is always_changed (it fingerprints data.source); any other stage is a rerun.
if grep "Running stage" <<<"$out" | grep -qv "Running stage 'source'"; then
  echo "container-check: FAILED: a stage ran again although nothing changed" >&2
  exit 1
fi
echo "container-check: OK"
