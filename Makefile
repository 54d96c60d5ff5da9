# edgesim: `make demo` runs the main job, `make test` runs the whole suite (what CI runs), `make check` the fast tier.
# Both set up everything on a fresh Debian machine (apt packages, a virtualenv, the project) and are
# safe to run twice: apt only installs what is missing, pip re-runs only when setup.cfg changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgesim-installed
PYTEST_ARGS ?=

.PHONY: demo test check setup system-deps bench lint clean

demo: setup
	$(VENV)/bin/edgesim demo

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "edgesim: pytest collected no tests: the suite is broken (exit 5)"; exit 1; fi; \
	exit $$rc

# the fast tier for everyday work: unit, property and timeline tests; no QEMU, no browser, nothing marked slow
CHECK_MARKERS := not emulator and not twin and not browser and not slow
check: setup
	@$(PY) -m pytest -q -m "$(CHECK_MARKERS)" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "edgesim: pytest collected no tests: the suite is broken (exit 5)"; exit 1; fi; \
	exit $$rc

setup: system-deps $(STAMP)

system-deps:
	@sh .ci/install-system-deps

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	@touch $(STAMP)

bench: setup
	$(PY) -m pip install -q torch==2.13.0 || echo "edgesim: torch==2.13.0 not installable here; train_step skips torch"
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) edgesim-out .pytest_cache
