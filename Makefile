# The commands of the README: `make train` (install, then train the default), `make demo` (install, then the method
# learning in about 16 minutes on 2 CPU cores) and `make test`.
PYTHON ?= python3

.PHONY: install train demo test test-slow lint

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

train: install
	$(PYTHON) -m nrt train --config configs/nrt-ws.yaml overwrite_output_dir=true  # the smoke test starts over each time

demo: install
	$(PYTHON) -m nrt demo

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow
