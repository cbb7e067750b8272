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

.PHONY: book env data browser chapters site test test-portability unit site-smoke golden scoreboard check-site bench clean help store verify

help:
	@echo "make book     - environment, data, every chapter at PROFILE=$(PROFILE), then the site (_build/html)"
	@echo "make test     - environment, data, browser, unit tests, nbval on the smoke-profile goldens, smoke site"
	@echo "make golden   - regenerate tests/golden/*.ipynb (profile smoke, every ATEN_CPU_CAPABILITY level here)"
	@echo "make test-portability - every golden under every ATEN_CPU_CAPABILITY level of this CPU"
	@echo "make browser  - find a Chromium for the site check, else install one (apt-get as root, else Playwright)"
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

# ---- data: the offline copy beside the checkout when there is one, else torchvision downloads.
# `repro.data check` looks for every data set the book needs (MNIST, CIFAR-10, Cats vs Dogs) and
# says where each comes from; Cats vs Dogs has no public download, so without the offline copy it
# must be put in DATA_DIR by hand (the check's message says how).
data: env
	@if $(PY) -m repro.data check "$(DATA_DIR)" >/dev/null 2>&1; then \
	  echo "data: MNIST, CIFAR-10 and Cats vs Dogs found in $(DATA_DIR)"; \
	else \
	  if [ -f "$(SHARED_DATA)/prepare.py" ]; then \
	    $(PY) "$(SHARED_DATA)/prepare.py" "$(DATA_DIR)"; \
	  else \
	    $(PY) -m repro.data download "$(DATA_DIR)"; \
	  fi; \
	  $(PY) -m repro.data check "$(DATA_DIR)"; \
	fi

# ---- browser: the site check opens every page in headless Chromium. A system Chromium (or
# $$CHROMIUM) is used when there is one; else Debian's package is installed when we are root with
# apt-get; else Playwright downloads its own build (internet needed); else a clear message.
browser: env
	@if b=$$($(PY) -m repro.tools.sitecheck --which-browser 2>/dev/null); then \
	  echo "browser: $$b"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: installing Debian's chromium with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  $(PY) -m repro.tools.sitecheck --which-browser; \
	elif $(PY) -m playwright install chromium; then \
	  $(PY) -m repro.tools.sitecheck --which-browser; \
	else \
	  $(PY) -m repro.tools.sitecheck --which-browser; \
	fi

# ---- chapters: papermill executes each notebook; re-run when its source, lib/ or the profile changes
build/profile-$(PROFILE):
	mkdir -p build && rm -f build/profile-* && touch $@

book/chapters/%.ipynb: notebooks/%.ipynb $(LIB) build/profile-$(PROFILE) | env data
	$(PY) -m repro.run $* -p profile $(PROFILE)

chapters: $(EXECUTED)

scoreboard: env
	$(PY) -m repro.tools.scoreboard --profile $(PROFILE)

site: chapters scoreboard
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going

book: env data site
	@echo "The book is in _build/html/index.html"

# ---- tests. The BLAS (MKL) and oneDNN kernel paths are pinned so that they do not depend on the
# CPU (tests/conftest.py sets the same for a bare `pytest`); ATen's own vectorization level is
# left free: the goldens record how far it moves each number (tests/nbnum.py, make golden).
TEST_ENV := MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2

unit: env data
	$(TEST_ENV) $(PY) -m pytest tests -q

test: env data browser
	$(TEST_ENV) $(PY) -m pytest tests $(PYTEST_NBVAL) -q
	$(MAKE) --no-print-directory site-smoke

# Every golden under every ATEN_CPU_CAPABILITY level of this CPU (make test does one chapter).
test-portability: env data
	REPRO_PORTABILITY=all $(TEST_ENV) $(PY) -m pytest tests/test_portability.py -q

# The site built from the smoke goldens (and the summaries nbval just wrote), in its own folder so that
# a quick build in book/chapters is never touched; then every page opened in headless Chromium.
SMOKE_SITE := build/smoke-site
site-smoke: env
	rm -rf $(SMOKE_SITE) && mkdir -p $(SMOKE_SITE)/book/chapters
	cp _config.yml _toc.yml $(SMOKE_SITE)/ && cp -r book/*.md book/_ext $(SMOKE_SITE)/book/
	cp tests/golden/*.ipynb $(SMOKE_SITE)/book/chapters/
	$(PY) -m repro.tools.scoreboard --profile smoke --out $(SMOKE_SITE)/book/scoreboard.md
	cd $(SMOKE_SITE) && $(abspath $(VENV))/bin/jupyter-book build . --all -W -n --keep-going
	$(PY) -m repro.tools.sitecheck $(SMOKE_SITE)/_build/html --screenshots $(SMOKE_SITE)/screenshots

# One papermill run per ATEN_CPU_CAPABILITY level this CPU has; the native run is kept with its images
# stripped and the numbers that moved between levels recorded as ranges (tests/make_golden.sh).
golden: env data
	tests/make_golden.sh $(PY) $(CHAPTERS)

check-site: env
	$(PY) -m repro.tools.sitecheck _build/html --screenshots _build/screenshots

# ---- the committed result store (results/store): add a finished full run, re-check a sample
store: env
	@test -n "$(CHAPTER)" || { echo "usage: make store CHAPTER=<chapter> (after python -m repro.run <chapter> -p profile full)"; exit 2; }
	$(PY) -m repro.store add $(CHAPTER)

verify: env data
	$(PY) -m repro.tools.verify --budget $(VERIFY_BUDGET)

bench: env data
	$(PY) bench/bench.py $(ARGS)

clean:
	rm -rf _build book/chapters build results/smoke results/quick
