# make repro: run the whole pipeline.  make test: run the test suite.
# Both create the virtual environment in .venv first if it is missing or stale.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Stage commands in dvc.yaml call `imgclf` and `dvc` from the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro scratch test lint compare bench clean-venv help lock container-check docs

# The `## ` comment of each target, with the value of each of HELP_VARS written in it.
HELP_VARS = RECIPE SWEEP JOBS
help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) \
		| sed $(foreach v,$(HELP_VARS),-e 's|$$($(v))|$($(v))|g') \
		| awk -F':.*## ' '{ printf "  make %-16s %s\n", $$1, $$2 }'

setup: $(STAMP) $(VENV)/.bin-on-path  ## create .venv and install the project with its dev tools

# The exact versions of the two locks (requirements.lock: what the pipeline runs with;
# requirements-dev.lock: tests, lint, bench), then the project itself without resolving
# anything again.
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "imgclf needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# A .pth file runs its `import` line at the start of every Python of the venv: this one
# puts the venv's bin/ first on PATH when it is not there, so that `.venv/bin/dvc repro`
# finds the stages' `imgclf` without an activated venv (DVC does not add its own bin/).
$(VENV)/.bin-on-path: scripts/venv-bin-on-path.pth | $(STAMP)
	cp $< "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/imgclf-venv-bin-on-path.pth"
	touch $@

# After changing the dependencies in pyproject.toml or requirements-dev.in: make lock
# (keeps the other pins); to move every pin to the newest allowed release:
# make lock LOCK_FLAGS=--upgrade. The runtime lock is a dep of the stages that compute
# (dvc.yaml), so a new pin there reruns them; the dev lock is no stage's dep.
LOCK_FLAGS ?=
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --strip-extras \
	--allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_FLAGS)
lock: setup  ## re-pin requirements.lock and requirements-dev.lock (pip-compile)
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --output-file requirements-dev.lock requirements-dev.in

container-check:  ## build the Docker image with podman and run the pipeline in it
	scripts/container-check.sh

repro: setup  ## run the pipeline: download -> pretrained -> split -> train -> evaluate -> export
	$(BIN)/dvc repro
	@# A stage's outputs are copied into the cache; relinking them (cache.type in
	@# .dvc/config) leaves one copy on disk where the filesystem allows.
	$(BIN)/dvc checkout --relink --quiet
	@$(BIN)/imgclf summary  # the test accuracy, where things are, what to run next

# The recipe's params as -S flags (imgclf recipe checks them first), run as an experiment;
# a bad recipe stops here rather than running the default params.
RECIPE ?= recipes/from-scratch.yaml
scratch: setup  ## train without pretrained weights: the recipe $(RECIPE) as a DVC experiment
	flags=$$($(BIN)/imgclf recipe $(RECIPE)) && $(BIN)/dvc exp run $$flags
	$(BIN)/dvc exp show --drop '.*' --keep 'Experiment|Created|test\.accuracy|test\.f1|model\.arch|image_size' \
		--precision 4

test: setup  ## run the test suite (set IMGCLF_DATA_MIRROR to include the real-photo test)
	$(BIN)/python -m pytest

# make compare SWEEP='model.arch=small,medium,large' JOBS=1
SWEEP ?= model.arch=small,medium,large
JOBS  ?= 1
compare: setup  ## queue $(SWEEP) as DVC experiments, run them, show them by test accuracy
	$(BIN)/dvc exp run --queue -S '$(SWEEP)' -S 'wandb.group=compare-$(shell date +%Y%m%d-%H%M%S)'
	$(BIN)/dvc queue start --jobs $(JOBS)
	@while $(BIN)/dvc queue status | grep -qE 'Queued|Running'; do sleep 10; done
	$(BIN)/dvc queue status
	$(BIN)/dvc exp show --sort-by metrics/eval.json:test.accuracy --sort-order desc \
		--drop 'deps|outs|Created' --precision 4

bench: setup  ## benchmark against the plain Keras baseline (for developers: bench/README.md)
	$(BIN)/python bench/bench.py

# docs/params.md is generated from the params' models (src/imgclf/params.py: keys,
# defaults, rules) and their descriptions (src/imgclf/params_help.py); the figures marked
# <!-- metric: ... --> in README.md and docs/ are rewritten from metrics/ (after a new
# make repro). tests/test_params_docs.py and tests/test_docs_figures.py fail while
# either is stale.
docs: setup  ## regenerate docs/params.md and the docs' figures from metrics/
	$(BIN)/python scripts/params_doc.py
	$(BIN)/python scripts/docs_figures.py

lint: setup  ## ruff
	$(BIN)/ruff check .

clean-venv:  ## remove .venv
	rm -rf $(VENV)
