# One entry point per job. Every target creates/updates the virtual environment itself, so each
# is one command on a fresh machine (Rust toolchain + Python 3.10+ required, nothing downloaded
# at run time: tokenizers and models used by the demo and the tests are built on the fly).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-compat lint bench clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Builds the Rust extension (release, via maturin) and installs all extras the suite needs.
install: $(BIN)/activate
	$(BIN)/pip install -q -e ".[test]"

# The main job: align on the embedded default, then `dskd-align distill` with no model arguments
# (the embedded demo: pretrain + cache tiny models, distill every arm, print test bits/byte).
demo: install
	$(BIN)/dskd-align align
	$(BIN)/dskd-align distill

# The whole test suite: Rust unit tests, then the Python suite (hypothesis, torch, CLI).
test: install
	cargo test --quiet
	$(BIN)/python -m pytest tests -rs

# The Python suite again with transformers v4 (4.57 and the tokenizers 0.22 it pins) in a second
# environment: the adapters and the torch layer support both major versions.
COMPAT := .venv-transformers4
test-compat:
	$(PY) -m venv $(COMPAT)
	$(COMPAT)/bin/pip install -q --upgrade pip
	$(COMPAT)/bin/pip install -q -e ".[test]" "transformers>=4.45,<5"
	$(COMPAT)/bin/python -c "import transformers as t, tokenizers as k; print('transformers', t.__version__, 'tokenizers', k.__version__)"
	$(COMPAT)/bin/python -m pytest tests -q -rs

lint: install
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/python -m mypy.stubtest dskd_align._core

bench: install
	cargo bench --bench align --features mimalloc
	$(BIN)/python benches/bench_speed.py
	$(BIN)/python benches/bench_coverage.py

clean:
	rm -rf $(VENV) $(COMPAT) target
