# baton — build, lint, test, demo and benchmarks. `make test` installs what it needs itself.
CARGO ?= cargo
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= never

.PHONY: all build lint test unit-test integration-test schemas demo bench deps clean collection .venv terraform-provider

all: build

## build: every binary of the workspace (debug)
build:
	$(CARGO) build --workspace --bins

## deps: system packages the tests need (Debian), installed when missing
deps:
	@bash .ci/deps.sh

## .venv: ansible-core (pinned major version) in a Python venv, for the Ansible collection's tests
ANSIBLE_CORE ?= ansible-core>=2.18,<2.19
VENV_STAMP := .venv/.ansible-core-2.18
.venv: $(VENV_STAMP)
$(VENV_STAMP):
	rm -rf .venv
	python3 -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check --no-input '$(ANSIBLE_CORE)'
	touch $@

## collection: the Ansible module binary, built into the collection (PROFILE=release for the bench)
PROFILE ?= debug
MODULE := plugins/ansible_collections/baton/systemd/plugins/modules/service
collection:
	$(CARGO) build -p baton-ansible --bin service $(if $(filter release,$(PROFILE)),--release)
	install -m 0755 $(or $(CARGO_TARGET_DIR),target)/$(PROFILE)/service $(MODULE)

## terraform-provider: the Terraform provider (release), for dev_overrides or a filesystem mirror
terraform-provider: deps
	$(CARGO) build --release -p baton-terraform --bin terraform-provider-baton

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## schemas: regenerate schemas/*.json from the Rust types
schemas:
	BATON_UPDATE_SCHEMAS=1 $(CARGO) test -p baton-core --test schemas

## unit-test: fast tests of every crate (no systemd needed)
unit-test:
	$(CARGO) test --workspace --exclude baton-integration

## integration-test: end-to-end tests against a sandboxed real systemd (needs root)
integration-test: deps build collection .venv
	$(CARGO) test -p baton-integration -- --test-threads=2

## test: lint, unit tests and end-to-end tests (the CI command)
test: deps lint unit-test integration-test

## demo: a real handover under load in a sandboxed systemd, with a report
demo: deps build
	$(CARGO) run -q -p baton-integration --bin baton-demo-run

## bench: side-by-side figures, written to bench-report.md
bench: deps .venv
	$(CARGO) build --release --workspace --bins
	$(MAKE) collection PROFILE=release
	$(CARGO) run -q --release -p baton-integration --bin baton-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-ansible-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-terraform-bench

clean:
	$(CARGO) clean
