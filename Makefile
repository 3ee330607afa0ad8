# vlm-tutorial: the main job, the tests, the docs.
# Every target installs what it needs into .venv first: torch 2.14.1 from PyPI (the CUDA build,
# which also runs on a CPU), transformers 5.12.1 and the test and docs tools.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install notebooks test lint docs bench gpu-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

## install: create .venv with torch, transformers 5.12.1 and the test/docs tools
install: $(STAMP)

## notebooks: the main job: execute every notebook (tiny offline models) into build/notebooks/
notebooks: $(STAMP)
	$(PY) -m tools.run_notebooks --out build/notebooks --summary build/notebooks/summary.json

## test: lint and type-check, then the CPU test suite (unit tests, engine tests, nbval + papermill, docs)
test: $(STAMP)
	$(VENV)/bin/ruff check vlm_tutorial vlm_bench tools tests
	$(VENV)/bin/ruff format --check vlm_tutorial vlm_bench tools tests
	$(PY) -m mypy
	$(PY) -m pytest

## docs: build the documentation site into docs/_build/html
docs: $(STAMP)
	$(PY) tools/build_docs.py

## bench: the format benchmark on CPU with the tiny models (quick mode)
bench: $(STAMP)
	$(PY) -m vlm_bench --quick

## gpu-test: the GPU entry point (needs an NVIDIA GPU and sglang==0.5.17; see docs/gpu.md)
gpu-test:
	$(PYTHON) tools/gpu_check.py

clean:
	rm -rf build docs/_build .pytest_cache
