# The two commands of the README: `make run` and `make test`. Both set everything up first and are
# idempotent: a second run reinstalls nothing unless a lock file (requirements/*.txt) or pyproject.toml changed.
#
# Installs take exactly the locked versions (requirements/*.txt, with hashes). They use uv when it can be
# had (on PATH, or installed from PyPI into the virtual environment) and fall back to pip.
# `make lock` re-resolves the locks from pyproject.toml (after changing a dependency there).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CONFIG ?= config.yaml
SYNAPSE_VERSION := 1.163.2
SYNAPSE_VENV := .synapse-venv
LOCKS  := requirements
# Locks are universal (any OS and architecture) for this Python and newer.
LOCK_PYTHON := 3.11

# glibc: no per-thread cache of freed blocks, so every block is wiped when freed and handed out again
# (memory/heap.py: the vector index's files would otherwise carry recycled memory). Harmless elsewhere.
HEAP_ENV := GLIBC_TUNABLES=glibc.malloc.tcache_count=0

# uv comes from PyPI into a folder of its own (never into a synced environment, which would remove it).
UV_HOME := .tools/uv
UV_BIN  := $(UV_HOME)/bin/uv

# `install_lock <python> <lock file> [<editable package>]`: make the environment of <python> hold exactly
# the lock. uv: sync (adds, upgrades and removes); pip (NO_UV=1, or uv unavailable): install with hashes
# checked (never removes).
define install_lock
	@if [ -z "$(NO_UV)" ] && ! command -v uv >/dev/null 2>&1 && [ ! -x $(UV_BIN) ]; then \
	    $(PYTHON) -m pip install -q --disable-pip-version-check --target $(UV_HOME) uv >/dev/null 2>&1 \
	    || echo "uv could not be installed from PyPI; installing with pip"; fi
	@uv=$$(command -v uv || echo $(UV_BIN)); \
	if [ -z "$(NO_UV)" ] && [ -x "$$uv" ]; then \
	    echo "installing $(2) with uv"; \
	    "$$uv" pip sync -q --python $(1) $(2) && { [ -z "$(3)" ] || "$$uv" pip install -q --python $(1) --no-deps $(3); }; \
	else \
	    echo "installing $(2) with pip"; \
	    $(1) -m pip install -q --require-hashes --no-deps -r $(2) && { [ -z "$(3)" ] || $(1) -m pip install -q --no-deps $(3); }; \
	fi
endef

.PHONY: run test check soak bench clean synapse lock i18n

run: $(VENV)/.stamp-install
	$(HEAP_ENV) $(VENV)/bin/paibot run --config $(CONFIG)

check: $(VENV)/.stamp-install
	$(VENV)/bin/paibot check --config $(CONFIG)

test: $(VENV)/.stamp-test $(SYNAPSE_VENV)/.stamp-install
	$(HEAP_ENV) $(PY) -m pytest -q

$(VENV)/.stamp-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "paibot needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	touch $@

# The virtual environment with paibot installed (editable) and exactly its locked runtime dependencies.
$(VENV)/.stamp-install: $(VENV)/.stamp-python $(LOCKS)/run.txt pyproject.toml
	$(call install_lock,$(PY),$(LOCKS)/run.txt,-e .)
	@rm -f $(VENV)/.stamp-test
	touch $@

# The locked test tools on top (pytest, hypothesis, playwright's driver; Chromium itself comes from the OS).
$(VENV)/.stamp-test: $(VENV)/.stamp-install $(LOCKS)/test.txt
	$(call install_lock,$(PY),$(LOCKS)/test.txt,-e .)
	touch $@

# A real Matrix homeserver for the Matrix adapter's end-to-end tests, in its own environment so its
# pinned dependencies never mix with paibot's.
$(SYNAPSE_VENV)/.stamp-install: $(LOCKS)/synapse.txt
	test -x $(SYNAPSE_VENV)/bin/python || $(PYTHON) -m venv $(SYNAPSE_VENV)
	$(call install_lock,$(SYNAPSE_VENV)/bin/python,$(LOCKS)/synapse.txt,)
	touch $@

synapse: $(SYNAPSE_VENV)/.stamp-install

# Re-resolve the locks after a change to pyproject.toml: pins already in a lock are kept where they still fit
# (`make lock UPGRADE=1` moves everything to the newest versions allowed). Hashes cover every platform.
lock: $(VENV)/.stamp-python
	@command -v uv >/dev/null 2>&1 || [ -x $(UV_BIN) ] || $(PYTHON) -m pip install -q --target $(UV_HOME) uv
	@uv=$$(command -v uv || echo $(UV_BIN)); set -e; \
	compile="$$uv pip compile -q --universal --python-version $(LOCK_PYTHON) --generate-hashes"; \
	[ -z "$(UPGRADE)" ] || compile="$$compile --upgrade"; \
	$$compile pyproject.toml -o $(LOCKS)/run.txt; \
	$$compile pyproject.toml --extra test -o $(LOCKS)/test.txt; \
	echo "matrix-synapse==$(SYNAPSE_VERSION)" | $$compile - -o $(LOCKS)/synapse.txt
	@echo "locks updated under $(LOCKS)/; run make test, then commit them"

# The long reliability runs (10,000 messages into 50 groups, 20 random SIGKILLs, 200 kills of the memory
# writer, ...). Scale with PAIBOT_SOAK_MESSAGES, PAIBOT_SOAK_GROUPS, PAIBOT_SOAK_KILLS,
# PAIBOT_SOAK_MEMORY_KILLS, PAIBOT_SOAK_REMINDERS, PAIBOT_SOAK_REMINDER_KILLS, PAIBOT_SOAK_REMINDER_MINUTES;
# replay a run with the PAIBOT_SOAK_SEED it printed. Also the security fuzz at 100,000 payloads.
soak: $(VENV)/.stamp-test $(SYNAPSE_VENV)/.stamp-install
	$(PY) -m pytest -m soak -s -q tests/reliability tests/security

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .tools .pytest_cache

# Translations (docs/i18n.md): extract every marked string (babel.cfg) and merge it into each catalog under
# bot/locale; then translate the new or fuzzy entries. tests/test_i18n.py fails until every one is done.
# Add a language: make i18n LANG_INIT=ja (then translate bot/locale/ja/LC_MESSAGES/paibot.po).
I18N_POT := bot/locale/paibot.pot
i18n: $(VENV)/.stamp-install
	$(VENV)/bin/pybabel -q extract -F babel.cfg --project paibot --add-location=file --sort-output --no-wrap \
	  -c TRANSLATORS: -o $(I18N_POT) .
	$(if $(LANG_INIT),$(VENV)/bin/pybabel -q init -i $(I18N_POT) -d bot/locale -D paibot -l $(LANG_INIT) --no-wrap)
	$(VENV)/bin/pybabel -q update -i $(I18N_POT) -d bot/locale -D paibot --no-wrap --ignore-obsolete \
	  --ignore-pot-creation-date
