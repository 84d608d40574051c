# The shipped binaries: the Ansible module `service`, the CLI `baton` and the Terraform provider
# `terraform-provider-baton`, built with the size-tuned `dist` profile (Cargo.toml) for x86_64
# Linux with glibc 2.17 or newer (the module with `dist-module`, which aborts on panic), by cargo-zigbuild (zig as the linker, against glibc 2.17's
# symbol versions). zig and cargo-zigbuild come from PyPI into .venv-zig.

.PHONY: dist check-no-protoc

ZIG_VENV := .venv-zig
ZIG_STAMP := $(ZIG_VENV)/.ziglang-0.17.1
DIST_TRIPLE := x86_64-unknown-linux-gnu
DIST_GLIBC := 2.17
DIST_DIR := $(or $(CARGO_TARGET_DIR),target)/$(DIST_TRIPLE)/dist
ZIGBUILD = PATH="$(abspath $(ZIG_VENV))/bin:$$PATH" $(CARGO) zigbuild --target $(DIST_TRIPLE).$(DIST_GLIBC)

$(ZIG_STAMP):
	rm -rf $(ZIG_VENV)
	python3 -m venv $(ZIG_VENV)
	$(ZIG_VENV)/bin/pip install --quiet --disable-pip-version-check --no-input 'ziglang==0.17.1' 'cargo-zigbuild==0.24.1'
	touch $@

## dist: the shipped binaries into target/x86_64-unknown-linux-gnu/dist{,-module}/ (glibc >= 2.17)
dist: $(ZIG_STAMP)
	$(ZIGBUILD) --profile dist -p baton-cli --bin baton -p baton-terraform --bin terraform-provider-baton
	$(ZIGBUILD) --profile dist-module -p baton-ansible --bin service
	@ls -l $(DIST_DIR)-module/service $(DIST_DIR)/baton $(DIST_DIR)/terraform-provider-baton

## collection: the shipped module binary (dist profile, glibc >= 2.17) into the collection
MODULE := plugins/ansible_collections/baton/systemd/plugins/modules/service
collection: $(ZIG_STAMP)
	$(ZIGBUILD) --profile dist-module -p baton-ansible --bin service
	install -m 0755 $(DIST_DIR)-module/service $(MODULE)

## check-no-protoc: build the Terraform provider's generated code with protoc and headers hidden
check-no-protoc:
	bash .ci/build-without-protoc.sh
