# baton — build, lint, test, demo and benchmarks. `make test` installs what it needs itself.
CARGO ?= cargo
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= never

.PHONY: all build lint test unit-test integration-test schemas demo bench deps clean

all: build

## build: every binary of the workspace (debug)
build:
	$(CARGO) build --workspace --bins

## deps: system packages the tests need (Debian), installed when missing
deps:
	@bash .ci/deps.sh

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
integration-test: build
	$(CARGO) test -p baton-integration -- --test-threads=2

## test: lint, unit tests and end-to-end tests (the CI command)
test: deps lint unit-test integration-test

## demo: a real handover under load in a sandboxed systemd, with a report
demo: deps build
	$(CARGO) run -q -p baton-integration --bin baton-demo-run

## bench: side-by-side figures, written to bench-report.md
bench: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) run -q --release -p baton-integration --bin baton-bench

clean:
	$(CARGO) clean
