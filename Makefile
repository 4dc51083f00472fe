# The two set-up commands (README): `make demo` and `make test`.
# Each installs what it needs: a virtual environment from PyPI, and the Debian
# packages the tests need for real parts (tmux, age, oathtool, gnome-keyring).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_HOME ?= demo-home
DEB_PACKAGES := tmux age oathtool gnome-keyring dbus dbus-daemon
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit bench deb clean lock

LOCK   := requirements.lock

# Every package, the dev and test tools and the build backend included, comes from
# the lock file at the version and with one of the SHA-256 hashes it names (pip
# refuses anything else); custodian itself is then installed without resolving
# dependencies and without an isolated build environment (which would fetch
# setuptools unchecked). The pip that python3.11 -m venv brings is used as it is.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Re-pin requirements.lock after a change of dependencies in pyproject.toml (needs
## PyPI; pip-tools runs in a throwaway venv). Review the diff before committing it.
PIP_TOOLS := pip-tools==7.6.2
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet $(PIP_TOOLS)
	.lock-venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev \
	  --all-build-deps --no-strip-extras --no-emit-index-url --no-emit-find-links \
	  --no-emit-trusted-host --output-file $(LOCK) pyproject.toml
	rm -rf .lock-venv

deb:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

## Open the TUI on a ready demo home (built on first use).
demo: $(STAMP)
	@[ -f $(DEMO_HOME)/custodian.toml ] || $(BIN)/custodian --home $(DEMO_HOME) demo
	$(BIN)/custodian --home $(DEMO_HOME)

lint: $(STAMP)
	$(BIN)/ruff format --check custodian screens tests benchmarks
	$(BIN)/ruff check custodian screens tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## The whole test suite: linters, type check, import contract, all tests.
test: $(STAMP) deb lint
	$(BIN)/pytest -n 2 -q

bench: $(STAMP) deb
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache .mypy_cache .ruff_cache
