# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/asdfd: pyproject.toml requirements.txt requirements-assets.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-assets.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/asdfd

demo: setup
	$(BIN)/asdfd demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check asdfd tests bench

clean:
	rm -rf $(VENV) .pytest_cache
