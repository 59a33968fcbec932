# Two entry points: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck pytest test-pythons test-newest soak notebooks bench clean container-test readme-images

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps: reinstall when pyproject.toml changes.
$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.base

demo: $(VENV)/.base
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/python -m pytest

test: lint typecheck pytest

# The whole suite on every supported Python (3.11, 3.12, 3.13; noxfile.py), each in a venv of
# its own under .nox/; an interpreter that is not installed is skipped with a message.
# Arguments for pytest: make test-pythons ARGS="tests/unit -x".
test-pythons: $(VENV)/.dev
	$(BIN)/nox -s tests $(if $(ARGS),-- $(ARGS))

# CI's second run: a fast subset (units, stores, bad input, e2e scenarios; SQLite only) on the
# newest supported Python that is installed.
test-newest: $(VENV)/.dev
	$(BIN)/nox -s fast

# Figures against this machine's floors; prints a table, writes benchmarks/results/latest.json.
# Bytecode first, as pip writes it for an installed copy: without it (an editable install with
# PYTHONDONTWRITEBYTECODE set) every CLI run would compile queuectl anew, about 25 ms.
bench: $(VENV)/.dev
	$(BIN)/python -m compileall -q queuectl
	$(BIN)/python -m benchmarks.run

# The heavier reliability variants (20,000 jobs under kill -9, 64 concurrent writers) and the
# PostgreSQL halves of the slowest end-to-end tests (@PostgresInSoak): minutes.
soak: $(VENV)/.dev
	$(BIN)/python -m pytest -m soak tests/reliability tests/e2e

# The README's pictures of the panel and the dashboard, taken by the browser tests (needs Chromium).
readme-images: $(VENV)/.dev
	README_IMAGES=1 $(BIN)/python -m pytest -q tests/browser/test_panel_controls.py \
		tests/browser/test_dashboard.py

# Re-execute the example notebooks and store their outputs (review the diff, then commit).
notebooks: $(VENV)/.dev
	$(BIN)/python scripts/refresh_notebooks.py

# The Dockerfile built and run for real with podman on a base made from Debian packages
# (mmdebstrap; no registry): enqueue, drain and status in three containers sharing a volume.
# Root on Debian; installs podman, mmdebstrap and runc when missing. Not part of `make test`.
container-test:
	bash scripts/container-test.sh

clean:
	rm -rf $(VENV) .nox .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
