# Two commands matter: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test test-deps lint typecheck layers unit bench bench-scale bench-instructions bench-deps image try-compose clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/godoxy-streams run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check godoxy_streams tests bench
	$(BIN)/ruff format --check godoxy_streams tests bench

typecheck: $(STAMP)
	$(BIN)/mypy godoxy_streams

layers: $(STAMP)
	$(BIN)/lint-imports --no-cache

# test-deps first: it installs (as root) the system packages the tests need, the venv's included.
test: test-deps lint typecheck layers
	$(BIN)/python -m pytest $(ARGS)

test-deps:
	scripts/test-deps.sh

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(ARGS)

bench-deps:
	apt-get update -q && apt-get install -y -q haproxy nginx-light libnginx-mod-stream iperf3 gcc libssl-dev valgrind

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(ARGS)

bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions $(ARGS)

image:
	scripts/build-image.sh

try-compose: $(STAMP)
	scripts/try-compose.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
