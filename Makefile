# Quick start: `make run` opens the studio, `make test` runs the suite. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench screenshots clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# PySide6's three wheels share PySide6/__init__.py: changing the version of one over an
	@# existing venv can delete it (then \`import PySide6\` finds a bare namespace). Put it back.
	$(PY) -c "import PySide6, sys; sys.exit(not hasattr(PySide6, '__version__'))" || \
	  $(PY) -m pip install --quiet --force-reinstall --no-deps -c constraints.txt \
	    PySide6 PySide6_Essentials PySide6_Addons shiboken6
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/aigc-studio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check studio plugins tests benchmarks
	$(VENV)/bin/ruff format --check studio plugins tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m benchmarks

# The user guide's pictures, taken from the real window (offscreen) with demo content.
screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m studio.ui.screenshots docs/images

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
