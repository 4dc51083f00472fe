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

.PHONY: demo test lint unit bench deb clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

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
