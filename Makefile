# GeoFlora: `make run` (install, build, generate, compute, serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
FRONTEND_SRC := $(shell find frontend/src frontend/index.html frontend/vite.config.js frontend/public -type f 2>/dev/null)

.PHONY: run test install frontend system-deps clean-data help

help:
	@echo "make run   install everything, build the web app, generate and compute the demo region, serve it"
	@echo "make test  install what the tests need (Debian packages, services) and run the whole suite"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	# torch first and pinned: a CPU wheel on this disk (a plain `torch` would pull a CUDA build).
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend/dist/index.html: frontend/node_modules/.installed $(FRONTEND_SRC)
	cd frontend && npm run build --silent

frontend: frontend/dist/index.html

system-deps:
	bash scripts/system-deps.sh $(if $(TEST),--test,)

run: install frontend
	bash scripts/system-deps.sh
	$(VENV)/bin/geoflora demo

test: install frontend
	bash scripts/system-deps.sh --test
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check backend inference tiles tests bench docs scripts
	cd frontend && npm run lint --silent && npm test --silent
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(CURDIR)/.cache/site
	$(PY) -m pytest $(PYTEST_ARGS)

clean-data:
	rm -rf data
