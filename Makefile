# Two entry points for a fresh machine (Python 3.11 + Java 17): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
AS_OF  ?= 2011-12-09

.PHONY: demo test lint install clean

$(BIN)/genre-spark: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch first (a local wheel here); an open range could pull a multi-GB CUDA build
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[spark,dev]"
	@touch $@

install: $(BIN)/genre-spark

# The whole pipeline on the shipped sample data, local Spark, Delta tables under ./warehouse.
demo: install
	$(BIN)/genre-spark run --conf conf/local.yaml --as-of $(AS_OF) --context-hour 9

lint: install
	$(BIN)/ruff check genre_spark tests jobs benchmarks tools
	$(BIN)/ruff format --check genre_spark tests jobs benchmarks tools
	$(BIN)/mypy

# Lint, type check, then the default suite (markers: slow and cluster run too; gpu skips without CUDA).
test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf warehouse spark-warehouse .pytest_cache .mypy_cache .ruff_cache
