SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := book

# ---- settings (override on the command line: make book PROFILE=full DATA_DIR=/data)
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= full
VERIFY_BUDGET ?= 300
DATA_DIR ?= $(HOME)/.cache/dl-repro-book/data
SHARED_DATA ?= ../shared/datasets
export DATA_DIR

CHAPTERS := $(basename $(notdir $(wildcard notebooks/*.ipynb)))
LIB := $(wildcard lib/repro/*.py) pyproject.toml
EXECUTED := $(CHAPTERS:%=book/chapters/%.ipynb)
GOLDENS := $(CHAPTERS:%=tests/golden/%.ipynb)
PYTEST_NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900

.PHONY: book env data chapters site test unit site-smoke golden scoreboard check-site bench clean help store verify

help:
	@echo "make book     - environment, data, every chapter at PROFILE=$(PROFILE), then the site (_build/html)"
	@echo "make test     - environment, data, unit tests and nbval on the smoke-profile goldens"
	@echo "make golden   - regenerate tests/golden/*.ipynb (papermill, profile smoke)"
	@echo "make bench    - speed benchmark (bench/results.json)"
	@echo "make store CHAPTER=c - add the entries of c's finished full run to the committed store (results/store)"
	@echo "make verify   - re-compute a sample of the committed store (VERIFY_BUDGET=$(VERIFY_BUDGET) s) and list what it lacks"

# ---- environment: created once, refreshed when the pins change
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

env: $(VENV)/.installed

# ---- data: the offline copy beside the checkout when there is one, else torchvision downloads
data: env
	@if $(PY) -m repro.data check "$(DATA_DIR)" >/dev/null 2>&1; then \
	  echo "data: found in $(DATA_DIR)"; \
	elif [ -f "$(SHARED_DATA)/prepare.py" ]; then \
	  $(PY) "$(SHARED_DATA)/prepare.py" "$(DATA_DIR)"; \
	else \
	  $(PY) -m repro.data download "$(DATA_DIR)"; \
	fi

# ---- chapters: papermill executes each notebook; re-run when its source, lib/ or the profile changes
build/profile-$(PROFILE):
	mkdir -p build && rm -f build/profile-* && touch $@

book/chapters/%.ipynb: notebooks/%.ipynb $(LIB) build/profile-$(PROFILE) | env data
	$(PY) -m repro.run $* -p profile $(PROFILE)

chapters: $(EXECUTED)

scoreboard: env
	$(PY) -m repro.scoreboard --profile $(PROFILE)

site: chapters scoreboard
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going

book: env data site
	@echo "The book is in _build/html/index.html"

# ---- tests
unit: env data
	$(PY) -m pytest tests -q

test: env data
	$(PY) -m pytest tests $(PYTEST_NBVAL) -q
	$(MAKE) --no-print-directory site-smoke

# The site built from the smoke goldens (and the summaries nbval just wrote), in its own folder so that
# a quick build in book/chapters is never touched; then every page opened in headless Chromium.
SMOKE_SITE := build/smoke-site
site-smoke: env
	rm -rf $(SMOKE_SITE) && mkdir -p $(SMOKE_SITE)/book/chapters
	cp _config.yml _toc.yml $(SMOKE_SITE)/ && cp -r book/*.md book/_ext $(SMOKE_SITE)/book/
	cp tests/golden/*.ipynb $(SMOKE_SITE)/book/chapters/
	$(PY) -m repro.scoreboard --profile smoke --out $(SMOKE_SITE)/book/scoreboard.md
	cd $(SMOKE_SITE) && $(CURDIR)/$(VENV)/bin/jupyter-book build . --all -W -n --keep-going
	$(PY) -m repro.sitecheck $(SMOKE_SITE)/_build/html --screenshots $(SMOKE_SITE)/screenshots

golden: env data
	for c in $(CHAPTERS); do \
	  $(PY) -m repro.run $$c -p profile smoke -p cache False -o tests/golden/$$c.ipynb; \
	done

check-site: env
	$(PY) -m repro.sitecheck _build/html --screenshots _build/screenshots

# ---- the committed result store (results/store): add a finished full run, re-check a sample
store: env
	@test -n "$(CHAPTER)" || { echo "usage: make store CHAPTER=<chapter> (after python -m repro.run <chapter> -p profile full)"; exit 2; }
	$(PY) -m repro.store add $(CHAPTER)

verify: env data
	$(PY) -m repro.verify --budget $(VERIFY_BUDGET)

bench: env data
	$(PY) bench/bench.py

clean:
	rm -rf _build book/chapters build results/smoke results/quick
