# `make test` and `make demo` create (or refresh) .venv on first use, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  base=$$(scripts/find_python.sh) || exit 1; \
	  echo "creating $(VENV) with $$base"; \
	  "$$base" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# STaR on addition, end to end on CPU (data, tokenizer, base pre-training, 5 iterations) into runs/demo.
# Rerunning resumes (or, when finished, reprints the table); `rm -rf runs/demo` starts over.
demo: $(STAMP)
	$(VENV)/bin/starjax star configs/demo.yaml $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
