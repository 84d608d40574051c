# The fleet harness of issue 14 (integration/src/fleet.rs): N sandboxed hosts, each a real
# systemd running sshd, joined by a bridge in a controller network namespace.
.PHONY: fleet

## fleet: boot N hosts (default 20) with sshd, print the inventory and how to reach them, wait for Ctrl-C or end of input, tear down (FLEET_ARGS=--check: check and tear down; so does CI=true)
fleet: deps
	$(CARGO) build -q -p baton-integration --bin baton-fleet
	$(CARGO) run -q -p baton-integration --bin baton-fleet -- --hosts $(or $(N),20) $(FLEET_ARGS)
