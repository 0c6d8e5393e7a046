# Two commands set everything up on a fresh machine:
#   make demo   # bootstrap .venv, then run the end-to-end demo (writes demo_out/report.html)
#   make test   # bootstrap .venv, then ruff + the test suite without the `slow` marker
#
# GPU users: install your own torch build into .venv first, e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126
#   make demo TORCH_SPEC=
# An empty TORCH_SPEC keeps whatever torch is already in .venv.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.recurrent-vision-installed
PYTEST_ARGS ?=

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --out demo_out

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

clean:
	rm -rf demo_out .pytest_cache
