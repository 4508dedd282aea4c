# hapool — the two commands a new user needs are `make demo` and `make test`.
# Every target sets up what it needs first (idempotent; the second time takes seconds).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := $(CURDIR)/.venv
BIN         := $(VENV)/bin
PYTEST      := $(BIN)/pytest
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup setup-local demo test lint \
        test-unit test-integration test-molecule test-e2e test-chaos bench clean status events \
        collection role-readmes

# Operator views (docs/observability.md):
#   make status [INVENTORY=inventories/docker] [EVENTS=5] [POOL=web]
#   make events [POOL=web] [SINCE=1h] [UNTIL=...] [ACTION=replace,scale_out] [INSTANCE=...] [LIMIT=20] [JSON=1]
INVENTORY ?=
EVENTS    ?= 5
POOL      ?=
SINCE     ?=
UNTIL     ?=
ACTION    ?=
INSTANCE  ?=
LIMIT     ?=
JSON      ?=

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup:  ## install packages, venv, start dockerd, build the local base image (idempotent)
	@bash scripts/setup.sh

setup-local:  ## like setup, without Docker (enough for the demo on the local provider)
	@bash scripts/setup.sh --no-docker

demo: setup-local  ## the main job: a load-balanced pool on the local provider (no Docker)
	@bash scripts/demo.sh

test: setup  ## set-up, lint, then every test suite (unit, integration, molecule, end-to-end, chaos)
	@bash scripts/run-tests.sh

lint: setup-local  ## ansible-lint (production profile), ruff, mypy
	@bash scripts/run-tests.sh lint

test-unit: setup-local  ## pure Python tests
	@bash scripts/run-tests.sh unit

test-integration: setup-local  ## real HAProxy and nginx processes on loopback
	@bash scripts/run-tests.sh integration

test-molecule: setup  ## molecule scenarios (docker driver, local base image)
	@bash scripts/run-tests.sh molecule

test-e2e: setup  ## playbooks and providers end to end (Docker, Vagrant; slow)
	@bash scripts/run-tests.sh e2e

test-chaos: setup  ## chaos under load: random kills with heal looping, reload storm, killed heal run, bad input
	@bash scripts/run-tests.sh chaos

# Benchmarks (bench/README.md): make bench [REPEAT=3] [ONLY=heal,scale] [PROVIDERS=local,docker] [QUICK=1]
REPEAT    ?= 3
ONLY      ?=
PROVIDERS ?= local,docker
QUICK     ?=

bench: setup  ## measure (~25 min): writes docs/benchmarks.md, bench/results.json, docs/img/bench-scale.png
	@python3 bench/run.py --repeat $(REPEAT) --providers $(PROVIDERS) $(if $(ONLY),--only $(ONLY)) $(if $(QUICK),--quick)

status: setup-local  ## per pool: desired, instances, in service, draining, down, last events (INVENTORY=, EVENTS=, POOL=)
	@ansible-playbook $(if $(INVENTORY),-i "$(INVENTORY)") playbooks/status.yml \
	    -e hapool_status_events=$(EVENTS) $(if $(POOL),-e hapool_status_pool="$(POOL)")

events:  ## the heal/scale event log as a table (POOL=, SINCE=10m|2h|ISO, UNTIL=, ACTION=a,b, INSTANCE=, LIMIT=, JSON=1)
	@python3 scripts/events.py $(if $(POOL),--pool "$(POOL)") $(if $(SINCE),--since "$(SINCE)") \
	    $(if $(UNTIL),--until "$(UNTIL)") $(if $(ACTION),--action "$(ACTION)") \
	    $(if $(INSTANCE),--instance "$(INSTANCE)") $(if $(LIMIT),--limit "$(LIMIT)") $(if $(JSON),--json)

# The collection hapool.pool (galaxy.yml; README "Use it from your own repository").
collection: setup-local  ## build the collection tarball dist/hapool-pool-<version>.tar.gz (scripts/build-collection.py)
	@python3 scripts/build-collection.py

role-readmes: setup-local  ## regenerate roles/<role>/README.md from meta/argument_specs.yml (scripts/role-readme.py)
	@python3 scripts/role-readme.py

clean:  ## stop what the demo started and remove local state (keeps .venv and the image)
	ansible-playbook playbooks/teardown.yml
	rm -rf .state/local .state/heal .state/scale
