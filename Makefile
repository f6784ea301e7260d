# conveyor — the two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install clean nginx chromium

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
test: $(STAMP) nginx chromium
	$(BIN)/python -m pytest -q

## nginx: the real nginx (Debian's package) that tests/api/test_cache.py puts in front of the
## API. Installed when missing, by apt-get as root or through `sudo -n`; the package starts a
## system nginx on port 80, which no test uses: it is stopped and disabled again. Without
## apt-get or the rights, a warning: the test then skips, or fails when CI is set.
nginx:
	@if ! test -x /usr/sbin/nginx && ! command -v nginx >/dev/null 2>&1; then \
	  sudo=""; test "$$(id -u)" = 0 || sudo="sudo -n"; \
	  echo "installing nginx (Debian package) for tests/api/test_cache.py"; \
	  if command -v apt-get >/dev/null 2>&1 && $$sudo env DEBIAN_FRONTEND=noninteractive \
	      sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx'; \
	  then \
	    { $$sudo systemctl disable --now nginx || $$sudo service nginx stop; } >/dev/null 2>&1 || true; \
	  else \
	    echo "WARNING: could not install nginx: tests/api/test_cache.py will skip (fail under CI)" >&2; \
	  fi; \
	fi

## chromium: Debian's chromium, the headless browser that tests/dashboard drives through
## Playwright (launched by path: `playwright install` is never run, nothing is downloaded
## but Debian's packages). Installed when missing, as nginx is; without apt-get or the
## rights, a warning: the dashboard tests then skip, or fail when CI is set.
chromium:
	@if ! test -x /usr/bin/chromium; then \
	  sudo=""; test "$$(id -u)" = 0 || sudo="sudo -n"; \
	  echo "installing chromium (Debian package) for tests/dashboard"; \
	  if ! { command -v apt-get >/dev/null 2>&1 && $$sudo env DEBIAN_FRONTEND=noninteractive \
	      sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core'; }; \
	  then \
	    echo "WARNING: could not install chromium: tests/dashboard will skip (fail under CI)" >&2; \
	  fi; \
	fi

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
