# PayEasy: `make run` serves the template locally, `make test` checks everything. Both set themselves up.
SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
.DEFAULT_GOAL := help

VENV    := .venv
SAMVENV := .venv-sam
PY      := $(VENV)/bin/python
PY313    = $(shell tools/find-python313)
PIP_FLAGS := -q --disable-pip-version-check --require-hashes

TEMPLATE ?= template.yaml
ARGS ?=

help:
	@echo "make run    - start the local stack (API :3000, AWS endpoint :4566)"
	@echo "make test   - set up, lint, type-check and run every test"
	@echo "make bench  - speed figures (not part of make test)"
	@echo "make build  - sam build (offline, python3.13 on PATH)"

$(VENV)/.installed: requirements.lock
	@py=$$(tools/find-python313) || exit 1; test -x $(PY) || $$py -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements.lock
	@touch $@

$(SAMVENV)/.installed: tools/sam.lock
	@py=$$(tools/find-python313) || exit 1; test -x $(SAMVENV)/bin/python || $$py -m venv $(SAMVENV)
	$(SAMVENV)/bin/pip install $(PIP_FLAGS) -r tools/sam.lock
	@touch $@

setup: $(VENV)/.installed $(SAMVENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	@# each handler is its own top-level `app` module (as in Lambda): type-check them one by one
	@for f in functions/*/app.py; do MYPYPATH=layers/payeasy $(VENV)/bin/mypy --no-error-summary $$f || exit 1; done
	@if [ -f $(TEMPLATE) ]; then $(MAKE) --no-print-directory lint-template; fi

lint-template: setup
	$(SAMVENV)/bin/sam validate --lint --template $(TEMPLATE)
	$(VENV)/bin/cfn-lint $(TEMPLATE)
	$(PY) -m local lint --template $(TEMPLATE)

browser:
	@tools/ensure-chromium >/dev/null

# Most tests wait on stacks, clocks and sockets rather than the CPU: a few workers (one test file each at a
# time: module fixtures stay shared) finish far sooner, even on two cores. JOBS=1 runs them one by one.
JOBS ?= 3
test: lint browser
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile $(ARGS)

# The acquirer simulator and the merchant webhook receiver run beside the stack (the template's
# AcquirerBaseUrl and MerchantWebhookBaseUrl defaults point at them).
ACQUIRER_PORT ?= 8081
WEBHOOKS_PORT ?= 8082
# The simulator's 3-D Secure callbacks go to the API, so both take the same port (LOCAL_API_PORT works too).
API_PORT ?= $(or $(LOCAL_API_PORT),3000)
run: setup
	$(PY) -m local start --template $(TEMPLATE) --api-port $(API_PORT) \
	  --sidecar "$(PY) -m simulators.acquirer --port $(ACQUIRER_PORT) --callback-base-url http://127.0.0.1:$(API_PORT)" \
	  --sidecar "$(PY) -m simulators.merchant_webhooks --port $(WEBHOOKS_PORT)" $(ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

build: setup
	PATH="$$(dirname $$(tools/find-python313)):$$PATH" $(SAMVENV)/bin/sam build --template $(TEMPLATE)

lock:
	@echo "regenerate with: uv pip compile pyproject.toml --group dev --generate-hashes -o requirements.lock"

.PHONY: help setup lint lint-template test run bench build lock
