# The two commands of the README: `make run` and `make test`. Both set everything up first and are
# idempotent: a second run reinstalls nothing unless pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CONFIG ?= config.yaml
SYNAPSE_VERSION := 1.163.2
SYNAPSE_VENV := .synapse-venv

.PHONY: run test check soak bench clean synapse i18n

run: $(VENV)/.stamp-install
	$(VENV)/bin/paibot run --config $(CONFIG)

check: $(VENV)/.stamp-install
	$(VENV)/bin/paibot check --config $(CONFIG)

test: $(VENV)/.stamp-test $(SYNAPSE_VENV)/.stamp-install
	$(PY) -m pytest -q

# The virtual environment with paibot installed (editable) and its runtime dependencies.
$(VENV)/.stamp-install: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "paibot needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

# Test extras on top (pytest, hypothesis, playwright's driver; Chromium itself comes from the OS).
$(VENV)/.stamp-test: $(VENV)/.stamp-install
	$(PIP) install -q -e '.[test]'
	touch $@

# A real Matrix homeserver for the Matrix adapter's end-to-end tests, in its own environment so its
# pinned dependencies never mix with paibot's.
$(SYNAPSE_VENV)/.stamp-install:
	test -x $(SYNAPSE_VENV)/bin/python || $(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SYNAPSE_VENV)/bin/python -m pip install -q "matrix-synapse==$(SYNAPSE_VERSION)"
	touch $@

synapse: $(SYNAPSE_VENV)/.stamp-install

# The long reliability runs (10,000 messages into 50 groups, 20 random SIGKILLs, 200 kills of the memory
# writer, ...). Scale with PAIBOT_SOAK_MESSAGES, PAIBOT_SOAK_GROUPS, PAIBOT_SOAK_KILLS,
# PAIBOT_SOAK_MEMORY_KILLS, PAIBOT_SOAK_REMINDERS, PAIBOT_SOAK_REMINDER_KILLS, PAIBOT_SOAK_REMINDER_MINUTES;
# replay a run with the PAIBOT_SOAK_SEED it printed. Also the security fuzz at 100,000 payloads.
soak: $(VENV)/.stamp-test $(SYNAPSE_VENV)/.stamp-install
	$(PY) -m pytest -m soak -s -q tests/reliability tests/security

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .pytest_cache

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
