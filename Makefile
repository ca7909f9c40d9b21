# One entry point: `make demo` runs the main job on the embedded demo data, `make test` the tests.
# Both set up .venv first (tools/setup.sh is idempotent: a second run does no work).
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= data/demo
DEMO_NAME ?= demo

.PHONY: setup test test-fast demo lint bench clean-demo

setup:
	@bash tools/setup.sh

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

demo: setup
	@bash tools/demo.sh "$(DEMO_DATA)" "$(DEMO_NAME)"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/bench_sampling.py
	$(BIN)/python benchmarks/bench_eval.py

clean-demo:
	rm -rf "$(DEMO_DATA)" results/$(DEMO_NAME)-step1 results/$(DEMO_NAME)-step2
