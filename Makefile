# offerbandit — one place for every command. Each target creates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv
# uv.lock pins every dependency; constraints.txt holds the same pins for pip, exported from it.
# `make lock` refreshes both after an edit of pyproject.toml's dependencies (LOCK_ARGS=--upgrade
# moves every pin to the newest allowed release); `make check` fails when they are stale.
CONSTRAINTS := constraints.txt
LOCK_ARGS ?=
EXPORT := $(UV) export --frozen --all-extras --no-emit-project --no-hashes --quiet

.PHONY: serve test check lock lock-check fmt lint types proto proto-check bench demo clean

$(STAMP): pyproject.toml uv.lock $(CONSTRAINTS)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

$(UV):  # just uv, so that a lock that no longer installs can still be refreshed
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) uv

serve: $(STAMP)  ## run the service on embedded defaults (127.0.0.1:50051, ./data)
	$(BIN)/offerbandit serve

test: $(STAMP)  ## run the whole test suite
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format bandit server offline_eval offerbandit tests bench scripts
	$(BIN)/ruff check --fix bandit server offline_eval offerbandit tests bench scripts

lint: $(STAMP)
	$(BIN)/ruff format --check bandit server offline_eval offerbandit tests bench scripts
	$(BIN)/ruff check bandit server offline_eval offerbandit tests bench scripts

types: $(STAMP)
	$(BIN)/mypy

proto: $(STAMP)  ## regenerate server/pb from proto/
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP)  ## fail when regenerating the protobuf code changes it
	$(BIN)/python scripts/gen_proto.py --check

lock: $(UV)  ## refresh uv.lock and constraints.txt from pyproject.toml
	$(UV) lock --python $(BIN)/python $(LOCK_ARGS)
	$(EXPORT) > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

lock-check: $(UV)  ## fail when uv.lock or constraints.txt disagrees with pyproject.toml
	@$(UV) lock --check --quiet --python $(BIN)/python || { echo "uv.lock is stale: run make lock" >&2; exit 1; }
	@$(EXPORT) | diff -u $(CONSTRAINTS) - || { echo "$(CONSTRAINTS) is stale: run make lock" >&2; exit 1; }

check: lock-check lint types proto-check test  ## everything CI cares about

bench: $(STAMP)
	$(BIN)/offerbandit bench

demo: $(STAMP)
	$(BIN)/offerbandit demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
