# Two commands on a fresh machine:  `make study`  (run everything, build the book)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PARAMS ?= params/default.yaml
# The shared reference data beside this checkout (CI, developers) is the data directory unless one is set.
export STUDYLIB_DATA ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),)

.PHONY: setup study run book check-book test benchmark strip-notebooks clean

# `make setup` is idempotent: it re-installs only when pyproject.toml changed since the last install.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

study: setup
	$(BIN)/studylib run --params $(PARAMS)
	$(BIN)/studylib book --params $(PARAMS)

run: setup
	$(BIN)/studylib run --params $(PARAMS)

book: setup
	$(BIN)/studylib book --params $(PARAMS)

check-book: setup   # needs the system's Chromium (Debian: apt-get install chromium chromium-driver)
	$(BIN)/studylib check-book --params $(PARAMS)

test: setup
	$(BIN)/python -m pytest -q

benchmark: setup
	$(BIN)/python benchmarks/run_all.py

# Remove outputs and execution counts from the committed notebooks (executed copies live under results/).
strip-notebooks: setup
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

clean:
	rm -rf results
