# The README's two commands: `make book` (the main job) and `make test` (the tests).
# Both create the virtual environment $(VENV) on first use and install the package into it.
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick

.PHONY: book test lint install release

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch first and pinned: an installed torch 2.13.0 satisfies the package's torch>=2.1,
	# so pip does not fetch a second (CUDA) build. On a GPU machine install your CUDA torch first.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,book]'
	touch $@

install: $(VENV)/.installed

book: install
	$(VENV)/bin/swig reproduce --profile $(PROFILE)

# The selected model of results/$(PROFILE) as the package's released model (swig_lib/released/),
# with its model card; run after `make book`. `swig apply` uses it when no --model is given.
release: install
	$(VENV)/bin/swig release --profile $(PROFILE)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
