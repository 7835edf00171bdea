# `make demo` and `make test` set themselves up: they create .venv when missing and install the
# project into it once (the stamp file is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmbricks-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
export LLMBRICKS_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

.PHONY: setup demo test lint docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The demo trains nothing yet: it shows the registry, a model summary, the data pipeline and
# generation from a randomly initialized model. Tiny shakespeare when the data folder has it,
# else Python's own documentation (embedded, no download).
DEMO_SOURCE := $(if $(wildcard $(LLMBRICKS_DATA_DIR)/tinyshakespeare.txt),tinyshakespeare,python_docs)

demo: $(STAMP)
	$(BIN)/llmbricks components
	$(BIN)/llmbricks model summary examples/configs/gpt2-124m.yaml
	$(BIN)/llmbricks config validate examples/configs/quickstart.yaml --smoke
	$(BIN)/llmbricks data prepare examples/configs/quickstart.yaml --set data.source=$(DEMO_SOURCE)
	$(BIN)/llmbricks generate --config examples/configs/quickstart.yaml --set data.source=$(DEMO_SOURCE) \
		--prompt "The " --max-new-tokens 60 --temperature 0.8 --seed 1

test: $(STAMP)
	$(BIN)/ruff check src tests examples docs
	$(BIN)/python -m pytest

BENCH_STAMP := $(VENV)/.llmbricks-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -c constraints.txt -e '.[bench]'
	touch $(BENCH_STAMP)

# Benchmarks compare ratios against peers measured in the same run (docs/benchmarks.md).
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_bpe.py
	$(BIN)/python benchmarks/bench_token_cache.py --mb 200
	$(BIN)/python benchmarks/bench_train_step.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_attention.py

docs: $(STAMP)
	$(BIN)/python docs/gen_components.py > docs/components.md

lint: $(STAMP)
	$(BIN)/ruff check src tests examples docs

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
