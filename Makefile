# conveyor — the two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,redis,api]'
	touch $(STAMP)

install: $(STAMP)

## run: API + workers on a SQLite file in ./.conveyor/ (demo tasks included) at
## http://127.0.0.1:8000; development mode: HTTP steps may call this machine (loopback)
run: $(STAMP)
	mkdir -p .conveyor
	CONVEYOR_HTTP_ALLOW=$${CONVEYOR_HTTP_ALLOW:-127.0.0.0/8,::1} \
		$(BIN)/conveyor serve --url sqlite:///.conveyor/conveyor.db -i conveyor.demo -v

## test: the whole suite against real stores
test: $(STAMP)
	$(BIN)/python -m pytest -q

## lint: ruff and mypy (strict) on src/
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: conveyor's own workloads (W2n, W6) and the peer workloads side by side
bench: $(STAMP)
	bash bench/run.sh

clean:
	rm -rf $(VENV) .conveyor .pytest_cache .mypy_cache .ruff_cache
