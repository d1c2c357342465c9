# The two commands of the README: `make demo` and `make test`.
# Each (re)creates .venv and installs the project (editable, with test extras) when
# the venv is missing or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# pytest-xdist processes: most tests are subprocess runs bound by one core (imports, one rank)
TEST_WORKERS ?= 2

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m wsol_bench

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache
