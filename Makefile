# The two commands of the README: `make train` (install, then train the default) and `make test`.
PYTHON ?= python3

.PHONY: install train test test-slow lint

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

train: install
	$(PYTHON) -m nrt train --config configs/nrt-ws.yaml

test: install
	$(PYTHON) -m ruff check nrt tests benchmarks
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow
