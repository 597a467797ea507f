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

# The plugin guide's example is tested as a third-party author ships it: built into a wheel and
# pip-installed (not editable, no dependencies, no index) before pytest runs its tests and the
# studio finds it through its entry point. The build needs hatchling in the venv (installed once;
# offline from then on). STUDIO_REQUIRE_EXAMPLE_PLUGIN makes a missing install a test failure.
EXAMPLE_WHEELS := build/example-plugin

test: $(STAMP)
	rm -rf $(EXAMPLE_WHEELS)
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(EXAMPLE_WHEELS) \
	  docs/example_plugin
	$(PY) -m pip install --quiet --no-deps --no-index --force-reinstall \
	  $(EXAMPLE_WHEELS)/studio_patterns-*.whl
	QT_QPA_PLATFORM=offscreen STUDIO_REQUIRE_EXAMPLE_PLUGIN=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check studio plugins tests benchmarks docs/example_plugin
	$(VENV)/bin/ruff format --check studio plugins tests benchmarks docs/example_plugin
	$(VENV)/bin/mypy
	@# the example plugin type-checks as its own distribution, against the public API
	cd docs/example_plugin && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml studio_patterns

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m benchmarks

# The user guide's pictures, taken from the real window (offscreen) with demo content.
screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m studio.ui.screenshots docs/images

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
