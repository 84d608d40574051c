# The Ansible collection baton.systemd: ansible-core venvs and the ecosystem's checkers.

.PHONY: ansible-check

## .venv: ansible-core (pinned major version) in a Python venv, for the Ansible collection's tests
ANSIBLE_CORE ?= ansible-core>=2.18,<2.19
VENV_STAMP := .venv/.ansible-core-2.18
.venv: $(VENV_STAMP)
$(VENV_STAMP):
	rm -rf .venv
	python3 -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check --no-input '$(ANSIBLE_CORE)'
	touch $@

## ansible-check: the collection's own checkers (ansible-test sanity, ansible-lint, galaxy build)
ansible-check: .venv
