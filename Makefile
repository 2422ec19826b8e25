# openautoglm.deploy - developer entry points. Every target does its own set-up.
#   make demo   - build a local systemd test host in Docker and run the main job against it
#   make test   - everything CI runs: units, service units, lint, sanity, molecule, fleet
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_FORCE_COLOR ?= 0
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
COLL_DIR := $(CURDIR)/.collections/ansible_collections/openautoglm
SVC_VENV ?= $(CURDIR)/.venv-service
SANITY_DIR ?= /tmp/openautoglm-sanity/ansible_collections/openautoglm/deploy

.PHONY: help venv service-venv collection-link docker image chromium deps units service-units sanity lint molecule fleet test demo clean

help:
	@grep -E '^#   make' $(MAKEFILE_LIST) | sed 's/^#   //'

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

# The model service's own test venv (torch CPU build, transformers, FastAPI); kept apart
# from the Ansible venv as on a real host.
$(SVC_VENV)/.installed: files/autoglm_service/requirements-test.txt
	python3 -m venv $(SVC_VENV)
	$(SVC_VENV)/bin/pip install -q --upgrade pip
	$(SVC_VENV)/bin/pip install -q -r files/autoglm_service/requirements-test.txt
	touch $@

service-venv: $(SVC_VENV)/.installed

collection-link:
	@mkdir -p $(COLL_DIR)
	@ln -sfn $(CURDIR) $(COLL_DIR)/deploy

docker:
	bash tests/harness/docker-up.sh

# Test-host images: Debian 12 (every scenario), 11 and 13 (the OS matrix of molecule/preflight).
IMAGE_SUITES ?= bookworm bullseye trixie
image: docker
	bash tests/harness/build-image.sh $(IMAGE_SUITES)

# Headless Chromium renders the fleet report in tests/integration/fleet (Debian's package;
# nothing to do when a browser is already on PATH).
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium || command -v chromium-browser) present"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	fi

deps: venv collection-link image

units: venv collection-link
	$(PY) -m pytest -q tests/unit

service-units: service-venv
	$(SVC_VENV)/bin/python -m pytest -q tests/unit/service

sanity: venv
	bash tests/harness/sanity.sh $(SANITY_DIR)

lint: venv collection-link
	ansible-lint --profile production

molecule: deps
	@for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s ==="; start=$$(date +%s); \
	  molecule test -s $$s || exit 1; \
	  echo "=== molecule $$s passed in $$(( $$(date +%s) - start )) s ==="; \
	done

# Fleet operations on container hosts: rolling upgrade, 50-host scale run, AWX (ansible-runner,
# ansible-builder), the fleet report in headless Chromium, the HAProxy gateway over three
# model-service hosts (needs the service venv, mounted into them).
fleet: deps chromium service-venv
	SVC_VENV=$(SVC_VENV) $(PY) -m pytest -q -rA tests/integration/fleet

test: deps units service-units lint sanity molecule fleet
	@echo "make test: all suites passed"

# The demo's client uses the service venv's openai package when that venv exists (else urllib).
demo: deps
	SVC_VENV=$(SVC_VENV) bash tests/harness/demo.sh

clean:
	-molecule destroy --all
	rm -rf .collections build reports tests/output
