# The Ansible collection baton.systemd: ansible-core venvs and the ecosystem's own checkers.
#
# The collection claims (meta/runtime.yml) exactly the ansible-core versions tested here: the
# oldest, 2.15, and the newest that runs on the machine's Python 3.11 (2.20 needs 3.12), 2.19.
# `.venv` (newest) and `.venv-oldest` each run the integration target (integration/tests/
# ansible.rs) and `ansible-test sanity`; ansible-lint has its own venv.
#
# ansible-test bootstraps pip into its venvs with a get-pip.py it downloads (unreachable
# offline): it runs under a private HOME whose get-pip cache holds mk/ansible-test-get-pip.py,
# which takes pip from `ensurepip` and the rest from the package index.

.PHONY: ansible-check ansible-sanity ansible-units ansible-lint ansible-build .venv .venv-oldest .venv-lint

COLLECTION_DIR := plugins/ansible_collections/baton/systemd
ANSIBLE_NEWEST := 2.19
ANSIBLE_OLDEST := 2.15
ANSIBLE_LINT := ansible-lint>=26.10,<27
ANSIBLE_PYTHON := $(shell python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ANSIBLE_OUT := $(abspath $(or $(CARGO_TARGET_DIR),target))/ansible-check
ANSIBLE_TEST_HOME := $(ANSIBLE_OUT)/home
PIP_INSTALL = bin/pip install --quiet --disable-pip-version-check --no-input

# $(call ansible-venv,dir,version): ansible-core <version>.x in a venv (pip from ensurepip).
define ansible-venv
$(1): $(1)/.ansible-core-$(2)
$(1)/.ansible-core-$(2):
	rm -rf $(1)
	python3 -m venv $(1)
	$(1)/$(PIP_INSTALL) 'ansible-core==$(2).*'
	touch $$@
endef

## .venv: the newest claimed ansible-core (integration-test uses it)
$(eval $(call ansible-venv,.venv,$(ANSIBLE_NEWEST)))
## .venv-oldest: the oldest claimed ansible-core
$(eval $(call ansible-venv,.venv-oldest,$(ANSIBLE_OLDEST)))

## .venv-lint: ansible-lint (with the newest ansible-core)
.venv-lint: .venv-lint/.ansible-lint
.venv-lint/.ansible-lint:
	rm -rf .venv-lint
	python3 -m venv .venv-lint
	.venv-lint/$(PIP_INSTALL) '$(ANSIBLE_LINT)' 'ansible-core==$(ANSIBLE_NEWEST).*'
	touch $@

# ansible-test's get-pip cache, for the pip version each ansible-test asks for.
define get-pip-for
	@set -e; v=$$(sed -n "s/^ *pip='\([0-9.]*\)',$$/\1/p" $(1)/lib/python*/site-packages/ansible_test/_internal/python_requirements.py | head -n 1); \
	test -n "$$v" || { echo "cannot tell which pip $(1)'s ansible-test bootstraps" >&2; exit 1; }; \
	mkdir -p $(ANSIBLE_TEST_HOME)/.ansible/test/cache; \
	install -m 0644 mk/ansible-test-get-pip.py $(ANSIBLE_TEST_HOME)/.ansible/test/cache/get_pip_$$(echo $$v | tr . _).py
endef
ANSIBLE_TEST = cd $(COLLECTION_DIR) && HOME=$(ANSIBLE_TEST_HOME) $(CURDIR)/$(1)/bin/ansible-test

## ansible-sanity: `ansible-test sanity` (every test it has) on the oldest and the newest ansible-core
ansible-sanity: .venv .venv-oldest collection
	$(call get-pip-for,.venv)
	$(call get-pip-for,.venv-oldest)
	$(call ANSIBLE_TEST,.venv-oldest) sanity --venv --python $(ANSIBLE_PYTHON) --color no
	$(call ANSIBLE_TEST,.venv) sanity --venv --python $(ANSIBLE_PYTHON) --color no

## ansible-units: the collection's Python unit tests (the action plugin), with `ansible-test units`
ansible-units: .venv collection
	$(call get-pip-for,.venv)
	$(call ANSIBLE_TEST,.venv) units --venv --python $(ANSIBLE_PYTHON) --color no

## ansible-lint: `ansible-lint --profile production` on the collection (offline)
ansible-lint: .venv-lint
	cd $(COLLECTION_DIR) && HOME=$(ANSIBLE_TEST_HOME) ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/plugins \
		PATH=$(CURDIR)/.venv-lint/bin:$$PATH $(CURDIR)/.venv-lint/bin/ansible-lint --profile production --offline --nocolor

## ansible-build: `ansible-galaxy collection build` (with the module binary `make collection` built)
ansible-build: .venv collection
	.venv/bin/ansible-galaxy collection build $(COLLECTION_DIR) --output-path $(ANSIBLE_OUT) --force

## ansible-check: the collection's own checkers: sanity (oldest and newest), units, lint, build
ansible-check: ansible-sanity ansible-units ansible-lint ansible-build

# integration/tests/ansible.rs runs the integration target on the oldest claimed ansible-core too.
integration-test: .venv-oldest
