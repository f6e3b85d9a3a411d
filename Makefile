# Every target bootstraps .venv by itself: a fresh machine needs nothing but python3 (>= 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit e2e bench soak clean

$(STAMP): pyproject.toml hatch_build.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

## run: the seed's incident, 70 s (two x25 bursts of real pip) against the embedded target
run: $(STAMP)
	$(BIN)/pipstorm run --profile production_incident --duration 70

# Tests run on $(WORKERS) pytest-xdist workers, a module at a time (its module-scoped servers and
# built wheel are made once), except those marked `serial`: they measure time or CPU, saturate
# the cores, fill cgroups or scan every process, so they run after the parallel part, alone on
# the machine (docs/testing.md).
WORKERS ?= 3
PARALLEL := -n $(WORKERS) --dist loadscope

## test: style, types, then the whole suite (end-to-end tests last; ~19 min on 2 cores)
test: lint typecheck
	$(BIN)/python -m pytest $(PARALLEL) -m "not e2e and not bench and not soak and not serial"
	$(BIN)/python -m pytest $(PARALLEL) -m "e2e and not serial"
	$(BIN)/python -m pytest -m "serial and not bench and not soak"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	@mkdir -p build/mypy/pipstorm
	@for d in engine clients infra packages; do ln -sfn ../../../$$d build/mypy/pipstorm/$$d; done
	@echo '"""pipstorm, as mypy sees it: the folders linked under one package."""' \
		> build/mypy/pipstorm/__init__.py
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "not e2e and not bench and not soak and not serial"
	$(BIN)/python -m pytest -m "not e2e and not bench and not soak and serial"

e2e: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "e2e and not serial"
	$(BIN)/python -m pytest -m "e2e and serial"

## bench: on-demand benchmarks; they print ratios against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python -m pytest -m bench -s tests/bench

## soak: the long runs (a full production_incident, a 30-minute soak): flat memory, nothing lost
soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -s tests/soak

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
