# Two commands do everything on a fresh machine with only python3:
#   make demo   -> virtual environment, install, train + evaluate CLOVER on the embedded demo data
#   make test   -> virtual environment, install, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench smoke-full lint clean

venv: $(STAMP)

# Reinstalls whenever the requirements or packaging change; otherwise a no-op.
$(STAMP): requirements.txt requirements-nodeps.txt setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) run_demo.py

bench: venv
	$(PY) -m benchmarks.run_all

# The full-size FlanT5-XL model (random weights) through a step from images, a step from cached
# features and a generation on CPU; ~12 GiB of memory; seconds and peak RSS go to RESULTS.md.
smoke-full: venv
	$(PY) -m benchmarks.smoke_full

lint: venv
	$(PY) -m ruff check lavis tests benchmarks *.py

clean:
	rm -rf $(VENV) runs .pytest_cache
