# offerbandit — one place for every command. Each target creates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test check fmt lint types proto proto-check bench demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)  ## run the service on embedded defaults (127.0.0.1:50051, ./data)
	$(BIN)/offerbandit serve

test: $(STAMP)  ## run the whole test suite
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format bandit server offline_eval tests bench scripts
	$(BIN)/ruff check --fix bandit server offline_eval tests bench scripts

lint: $(STAMP)
	$(BIN)/ruff format --check bandit server offline_eval tests bench scripts
	$(BIN)/ruff check bandit server offline_eval tests bench scripts

types: $(STAMP)
	$(BIN)/mypy

proto: $(STAMP)  ## regenerate server/pb from proto/
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP)  ## fail when regenerating the protobuf code changes it
	$(BIN)/python scripts/gen_proto.py --check

check: lint types proto-check test  ## everything CI cares about

bench: $(STAMP)
	$(BIN)/offerbandit bench

demo: $(STAMP)
	$(BIN)/offerbandit demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
