# baton — build, lint, test, demo and benchmarks. `make test` installs what it needs itself.
# The Ansible collection's targets (venvs, sanity, lint) live in mk/ansible.mk; the portable
# (old-glibc, size-tuned) release binaries in mk/release.mk.
CARGO ?= cargo
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= never

.DEFAULT_GOAL := all
include mk/ansible.mk
include mk/release.mk
include mk/fleet.mk

.PHONY: all build lint test unit-test integration-test schemas demo bench deps clean collection terraform-provider

all: build

## build: every binary of the workspace (debug)
build:
	$(CARGO) build --workspace --bins

## deps: system packages the tests need (Debian), installed when missing
deps:
	@bash .ci/deps.sh

## terraform-provider: the Terraform provider (release), for dev_overrides or a filesystem mirror
terraform-provider: deps
	$(CARGO) build --release -p baton-terraform --bin terraform-provider-baton

## lint: formatting, clippy and the API docs, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace

## schemas: regenerate schemas/*.json from the Rust types
schemas:
	BATON_UPDATE_SCHEMAS=1 $(CARGO) test -p baton-core --test schemas

## unit-test: fast tests of every crate (no systemd needed)
unit-test:
	$(CARGO) test --workspace --exclude baton-integration

## integration-test: end-to-end tests against a sandboxed real systemd (needs root)
integration-test: deps build dist collection .venv
	$(CARGO) test -p baton-integration -- --test-threads=2

## test: lint, unit tests and end-to-end tests (the CI command)
test: deps lint check-no-protoc unit-test ansible-check integration-test

## demo: a real handover under load in a sandboxed systemd, with a report
demo: deps build
	$(CARGO) run -q -p baton-integration --bin baton-demo-run

## bench: side-by-side figures, written to bench-report.md
bench: deps .venv
	$(CARGO) build --release --workspace --bins
	$(MAKE) dist collection
	$(CARGO) run -q --release -p baton-integration --bin baton-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-ansible-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-terraform-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-fleet-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-terraform-fleet-bench
	$(CARGO) run -q --release -p baton-integration --bin baton-modes-bench

clean:
	$(CARGO) clean
