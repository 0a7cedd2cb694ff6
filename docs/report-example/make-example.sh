#!/usr/bin/env bash
# Rebuild docs/report-example/: a real `imgclf report` of two commits of this project,
# run on a tiny generated data set (3 classes x 30 noisy 32 px images, the small CNN, no
# W&B), so it takes a few minutes on a laptop. Run from anywhere, with `make setup` done:
#   docs/report-example/make-example.sh
# It works in a throw-away copy of the committed project (git archive HEAD) in a temp
# folder, and leaves the project itself untouched but for this folder.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export PATH="$ROOT/.venv/bin:$PATH" WANDB_MODE=disabled DVC_NO_ANALYTICS=1
git() { command git -c user.name=example -c user.email=example@localhost "$@"; }

mkdir "$TMP/project"
git -C "$ROOT" archive HEAD | tar -x -C "$TMP/project"
cd "$TMP/project"
# Close colours and heavy noise, so the two runs differ visibly.
python - "$TMP/images" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

rng = np.random.default_rng(3)
for c, name in enumerate(["cats", "dogs", "snakes"]):
    folder = Path(sys.argv[1]) / name
    folder.mkdir(parents=True)
    for i in range(30):
        base = np.array([110 + 25 * c, 140, 150 - 20 * c])
        pixels = np.clip(base + rng.integers(-110, 110, size=(32, 32, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}_{i:03d}.png")
PY
python - "$TMP/images" <<'PY'
import re
import sys
from pathlib import Path

text = Path("params.yaml").read_text()
for key, value in [("source", sys.argv[1]), ("image_size", "32"), ("arch", "small"),
                   ("pretrained", "false"), ("epochs", "3"), ("batch_size", "16"),
                   ("enabled", "false")]:  # the first key of each name: data.source, ...
    text = re.sub(rf"^(\s*{key}:\s*)[^\s#]+", lambda m: m.group(1) + value, text,
                  count=1, flags=re.M)
Path("params.yaml").write_text(text)
PY
git init -q -b main && git add -A && git commit -qm "the project, tiny data"
dvc repro -q && git add -A && git commit -qm "run 1: small CNN, learning rate 0.001, 3 epochs"
git checkout -q -b faster
sed -i 's/^  learning_rate: 0.001/  learning_rate: 0.003/; s/^  epochs: 3 /  epochs: 5 /' params.yaml
dvc repro -q && git add -A && git commit -qm "run 2: learning rate 0.003, 5 epochs"

rm -rf "$HERE/report.md" "$HERE/plots"
imgclf report --base main --output "$HERE/report.md" --plots-dir "$HERE/plots"
