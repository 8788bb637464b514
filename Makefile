# Two commands do everything on a fresh machine with only python3:
#   make demo   -> virtual environment, install, train + evaluate CLOVER on the embedded demo data
#   make test   -> virtual environment, install, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo serve browser bench smoke-full lint docs clean

venv: $(STAMP)

# Reinstalls whenever the requirements or packaging change; otherwise a no-op.
$(STAMP): requirements.txt requirements-nodeps.txt setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $(STAMP)

test: venv browser
	$(PY) -m pytest -q

# The web page is tested in a real headless browser: Debian's chromium (installed here when
# missing and running as root; otherwise the exact command to run is printed).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the page test (apt-get install -y chromium)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "error: the page test needs Debian's chromium: run 'sudo apt-get install -y chromium'" >&2; exit 2; \
	  fi; }

# Serve the demo model (after `make demo`): the page at http://127.0.0.1:8000, the API at /v1.
SERVE_MODEL ?= runs/demo/stage2  # a run folder: its best checkpoint, else its last
serve: venv
	$(PY) -m lavis.apps.serve --model $(SERVE_MODEL)

demo: venv
	$(PY) run_demo.py

bench: venv
	$(PY) -m benchmarks.run_all

# The full-size FlanT5-XL model (random weights) through a step from images, a step from cached
# features and a generation on CPU; ~12 GiB of memory; seconds and peak RSS go to RESULTS.md.
smoke-full: venv
	$(PY) -m benchmarks.smoke_full

# The documentation as a site (runs/site); strict: a broken link or a page missing from the nav fails.
docs: venv
	$(PY) -m mkdocs build --strict

lint: venv
	$(PY) -m ruff check lavis tests benchmarks *.py

clean:
	rm -rf $(VENV) runs .pytest_cache
