# abdr: `make up` runs the orchestrator on its embedded default; `make test` runs the suite.
# Both create or refresh .venv and install the project (a no-op when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test test-testbed bench install clean-state

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/abdr up

# Two test processes (pytest-xdist), each with its own dev server and fixtures; a module stays
# on one process (--dist loadfile), so module-scoped stacks are built once.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-hypervisor.sh $(VENV)
	bash scripts/ensure-browser.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=40 -m 'not testbed' -n 2 --dist loadfile

# QEMU's own mechanisms under the libvirt driver (tests/hypervisor/test_testbed.py)
test-testbed: install
	bash scripts/ensure-hypervisor.sh $(VENV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m testbed

bench: install
	bash scripts/ensure-hypervisor.sh $(VENV)
	bash scripts/install-bench-tools.sh
	$(BIN)/python -m bench

clean-state:
	rm -rf .abdr
