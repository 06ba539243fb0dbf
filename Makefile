# `make test` and `make demo` create (or refresh) .venv on first use, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Every package, direct and transitive, at the version the README's numbers were measured with.
LOCK := requirements.lock

.PHONY: test lint format demo venv torch-env lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@if [ ! -x $(PY) ]; then \
	  base=$$(scripts/find_python.sh) || exit 1; \
	  echo "creating $(VENV) with $$base"; \
	  "$$base" -m venv $(VENV) || exit 1; \
	fi
	@# uv installs the locked set with parallel downloads: 12 s from an empty cache, where pip took
	@# 55 s. pip (without byte-compiling, which took 25 of its seconds) where uv cannot be installed.
	@if $(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9; then \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) -c $(LOCK) -e '.[dev]'; \
	else \
	  echo "uv unavailable; installing with pip"; \
	  $(PY) -m pip install --quiet --no-compile -c $(LOCK) -e '.[dev]'; \
	fi
	@touch $(STAMP)

# Re-resolves requirements.lock after a change to pyproject.toml's dependencies (keeping every
# pin that still fits), for Python 3.12+ on every platform; uv runs from an environment of its own.
lock:
	@base=$$(scripts/find_python.sh) || exit 1; \
	  [ -x build/lock-env/bin/uv ] || { "$$base" -m venv build/lock-env && build/lock-env/bin/pip install --quiet uv==0.13.9; } || exit 1
	build/lock-env/bin/uv pip compile pyproject.toml --extra dev --extra gcs --universal --python-version 3.12 \
	  --annotation-style line --custom-compile-command "make lock" -o $(LOCK)

# The PyTorch side of the Hugging Face parity tests: its own Python 3.11 environment, where the
# CPU build of torch is served from local disk (see tests/hf/requirements-torch.txt). Without a
# Python 3.11 the parity tests skip with a message; everything else still runs.
TORCH_VENV ?= .venv-torch
TORCH_STAMP := $(TORCH_VENV)/.installed-stamp
PY311 ?= $(shell command -v python3.11 2>/dev/null || ls $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.11*/bin/python3 2>/dev/null | tail -1)

torch-env: $(TORCH_STAMP)

$(TORCH_STAMP): tests/hf/requirements-torch.txt
	@if [ -z "$(PY311)" ]; then echo "note: no Python 3.11 found; the transformers parity tests will skip"; exit 0; fi; \
	  set -e; [ -x $(TORCH_VENV)/bin/python ] || "$(PY311)" -m venv $(TORCH_VENV); \
	  echo "installing the PyTorch parity environment in $(TORCH_VENV)"; \
	  $(TORCH_VENV)/bin/python -m pip install --quiet -r tests/hf/requirements-torch.txt; \
	  touch $(TORCH_STAMP)

test: $(STAMP) $(TORCH_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ruff's lint rules and formatter (pyproject.toml [tool.ruff]); `make format` rewrites in place.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# STaR on addition, end to end on CPU (data, tokenizer, base pre-training, STaR iterations) into
# runs/demo, compared at the end with the README's table (seed 0). Rerunning resumes (or, when
# finished, reprints the table); `rm -rf runs/demo` starts over.
demo: $(STAMP)
	$(VENV)/bin/starjax star configs/demo.yaml $(DEMO_ARGS) --reference configs/demo_reference.json

clean:
	rm -rf $(VENV) $(TORCH_VENV) .pytest_cache
