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

# The demo trains the quickstart config (a character-level baby GPT, about 2 minutes on 2 CPU
# cores) on tiny shakespeare when the data folder has it, else on Python's own documentation
# (embedded, no download), then continues a prompt with the trained run.
DEMO_SOURCE := $(if $(wildcard $(LLMBRICKS_DATA_DIR)/tinyshakespeare.txt),tinyshakespeare,python_docs)
DEMO_PROMPT := $(if $(filter tinyshakespeare,$(DEMO_SOURCE)),ROMEO:,The )

demo: $(STAMP)
	$(BIN)/llmbricks train examples/configs/quickstart.yaml --set data.source=$(DEMO_SOURCE) \
		--set 'train.sample_prompt="$(DEMO_PROMPT)"' --out runs/demo-$$(date +%Y%m%d-%H%M%S)
	@run=$$(ls -td runs/demo-* | head -1); \
	echo; echo "A sample from $$run:"; \
	$(BIN)/llmbricks generate $$run --prompt "$(DEMO_PROMPT)" --max-new-tokens 300 \
		--temperature 0.8 --top-k 40 --seed 1; \
	echo; echo "The run is in $$run: config.yaml, checkpoints/, metrics.jsonl, samples.txt;"; \
	echo "its loss curves are in $$run/loss.png."

test: $(STAMP)
	$(BIN)/ruff check src tests examples docs
	$(BIN)/lint-imports
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
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_attention.py
	$(BIN)/python benchmarks/bench_nanogpt_race.py
	$(BIN)/python benchmarks/bench_book_ch5.py

docs: $(STAMP)
	$(BIN)/python docs/gen_components.py > docs/components.md
	$(BIN)/python docs/gen_cli_help.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples docs

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
