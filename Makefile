# `make test` and `make demo` create (or refresh) .venv on first use, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo venv torch-env clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  base=$$(scripts/find_python.sh) || exit 1; \
	  echo "creating $(VENV) with $$base"; \
	  "$$base" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	@# --no-compile: byte-compiling every installed module took 25 of the install's 43 s; Python
	@# compiles the few it imports on first use instead
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	@touch $(STAMP)

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

# STaR on addition, end to end on CPU (data, tokenizer, base pre-training, 11 iterations) into runs/demo.
# Rerunning resumes (or, when finished, reprints the table); `rm -rf runs/demo` starts over.
demo: $(STAMP)
	$(VENV)/bin/starjax star configs/demo.yaml $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(TORCH_VENV) .pytest_cache
