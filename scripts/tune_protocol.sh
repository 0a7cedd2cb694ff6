#!/usr/bin/env bash
# The measurement of docs/tuning.md: defaults vs tuned test accuracy, each over seeds.
#   scripts/tune_protocol.sh BUDGET SEED...     (in a project whose params.yaml is set up)
# 1. the defaults: dvc exp run up to evaluate (no export) once per seed, test accuracy;
# 2. imgclf tune --time BUDGET (val only, recipes/tune.yaml);
# 3. imgclf tune --apply, then the same runs as 1 with the tuned params.
# Every line it prints that starts with "RESULT" is one test accuracy; the log of each
# step is under tune/protocol/. STUDY=name names the study (default tune);
# SKIP_DEFAULTS=1 leaves step 1 out (already measured).
set -euo pipefail
budget=$1; shift
mkdir -p tune/protocol
acc() {  # the test accuracy of experiment $1 from dvc exp show
  python -m dvc exp show --json 2>/dev/null | python -c "
import json, sys
for e in json.load(sys.stdin):
    for x in e.get('experiments') or []:
        for r in x.get('revs', []):
            if r.get('name') == '$1':
                print(r['data']['metrics']['metrics/eval.json']['data']['test']['accuracy'])"
}
scored() {  # $1: defaults|tuned; the rest: seeds
  local kind=$1; shift
  for seed in "$@"; do
    local name="$kind-s$seed" start=$SECONDS
    python -m dvc exp run -n "$name" -S "train.seed=$seed" evaluate \
      > "tune/protocol/$name.log" 2>&1
    echo "RESULT $kind seed $seed test accuracy $(acc "$name") ($((SECONDS - start)) s)"
  done
}
study=${STUDY:-tune}
if [ -z "${SKIP_DEFAULTS:-}" ]; then
  cp params.yaml tune/protocol/params.defaults.yaml
  scored defaults "$@"
fi
cp tune/protocol/params.defaults.yaml params.yaml  # the tune starts from the defaults
start=$SECONDS
imgclf tune --time "$budget" --study "$study" 2>&1 | tee "tune/protocol/$study.log"
echo "RESULT tune took $((SECONDS - start)) s"
imgclf tune --study "$study" --apply | tee "tune/protocol/$study-apply.log"
scored tuned "$@"
