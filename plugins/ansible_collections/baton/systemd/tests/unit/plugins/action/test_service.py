# -*- coding: utf-8 -*-
# Copyright (c) baton developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of the controller side of baton.systemd.service: the option check against the
sidecar's argument spec, the reading of the target probe, and the choice of module binary."""

from __future__ import annotations

import os

import pytest

from ansible_collections.baton.systemd.plugins.action import service


@pytest.fixture(scope='module')
def spec():
    return service.module_argument_spec()


VALID = {'name': 'web', 'version': 'v2', 'exec_start': ['/opt/web/bin/web', '--port', '8080'], 'port': 8080}


def test_the_spec_comes_from_the_sidecar(spec):
    assert spec['name']['type'] == 'str'
    assert spec['exec_start'] == dict(spec['exec_start'], type='list', elements='str')
    assert spec['state']['choices'] == ['started', 'stopped', 'absent']
    assert spec['health']['options']['timeout_sec']['type'] == 'int'


def test_valid_options_pass(spec):
    assert service.validate(VALID, spec) == []
    # strings the module converts itself (a templated port) are not refused
    assert service.validate(dict(VALID, port='8080', health={'http': '/health', 'observe_sec': '5'}), spec) == []


def test_a_typo_is_named(spec):
    errors = service.validate(dict(VALID, prot=8080), spec)
    assert len(errors) == 1
    assert errors[0].startswith('prot: unknown option; the options are ')
    assert ' port,' in errors[0]


def test_a_typo_in_a_suboption_is_named_with_its_path(spec):
    errors = service.validate(dict(VALID, health={'timout_sec': 5}), spec)
    assert len(errors) == 1
    assert errors[0].startswith('health.timout_sec: unknown option; the options here are ')
    assert 'timeout_sec' in errors[0]


@pytest.mark.parametrize('args, expected', [
    (dict(VALID, port='eighty'), 'port: must be of type int'),
    (dict(VALID, state='running'), 'state: must be one of started, stopped, absent, got running'),
    (dict(VALID, health={'timeout_sec': 'soon'}), 'health.timeout_sec: must be of type int'),
    (dict(VALID, enabled='maybe'), 'enabled: must be of type bool'),
])
def test_a_wrong_value_is_named(spec, args, expected):
    errors = service.validate(args, spec)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_a_missing_required_option_is_named(spec):
    required = sorted(name for name, entry in spec.items() if entry.get('required'))
    assert 'name' in required
    args = dict(VALID)
    del args['name']
    assert service.validate(args, spec) == ['name: required option missing']


def test_the_probe_reads_a_glibc_linux():
    target = service.parse_probe('baton-probe\nLinux\nx86_64\nglibc 2.36\n')
    assert target == {'system': 'Linux', 'machine': 'x86_64', 'libc': 'glibc', 'libc_version': [2, 36]}
    assert service.pick_binary(target)['path'] == 'plugins/modules/service'


def test_the_probe_ignores_what_comes_before_its_marker():
    target = service.parse_probe('Welcome to host!\nbaton-probe\nLinux\nx86_64\nglibc 2.17\n')
    assert service.pick_binary(target)['path'] == 'plugins/modules/service'


def test_the_probe_reads_musl_and_unknown_libcs():
    assert service.parse_probe('baton-probe\nLinux\nx86_64\nmusl libc (x86_64)\n')['libc'] == 'musl'
    assert service.parse_probe('baton-probe\nFreeBSD\namd64\nunknown\n')['libc'] == 'unknown libc'
    with pytest.raises(ValueError):
        service.parse_probe('sh: uname: not found\n')


SHIPPED = 'and the collection ships the module only for Linux x86_64 with glibc 2.17 or newer.'


@pytest.mark.parametrize('probe, has', [
    ('Linux\ni686\nglibc 2.36', 'Linux i686 with glibc 2.36'),
    ('Linux\naarch64\nglibc 2.36', 'Linux aarch64 with glibc 2.36'),
    ('Linux\nx86_64\nglibc 2.12', 'Linux x86_64 with glibc 2.12'),
    ('Linux\nx86_64\nmusl libc (x86_64)', 'Linux x86_64 with musl'),
    ('Darwin\nx86_64\nunknown', 'Darwin x86_64'),
    ('FreeBSD\namd64\nunknown', 'FreeBSD amd64'),
])
def test_a_target_the_collection_cannot_serve_gets_one_sentence(probe, has):
    target = service.parse_probe('baton-probe\n' + probe + '\n')
    with pytest.raises(ValueError) as e:
        service.pick_binary(target)
    message = str(e.value)
    assert message == 'baton.systemd.service cannot run on this target: it is %s, %s' % (has, SHIPPED)
    assert '\n' not in message and message.endswith('.')


def test_more_binaries_are_rows_of_the_table():
    rows = service.SHIPPED + ({'path': 'bin/service-aarch64', 'system': 'Linux', 'machine': 'aarch64',
                               'libc': 'glibc', 'min_libc': (2, 17)},)
    target = service.parse_probe('baton-probe\nLinux\naarch64\nglibc 2.28\n')
    assert service.pick_binary(target, rows)['path'] == 'bin/service-aarch64'
    with pytest.raises(ValueError, match=r'ships the module only for Linux x86_64 with glibc 2\.17 or newer or Linux aarch64'):
        service.pick_binary(service.parse_probe('baton-probe\nLinux\nriscv64\nglibc 2.36\n'), rows)


def test_every_shipped_path_is_in_the_collection():
    for row in service.SHIPPED:
        assert os.path.relpath(os.path.join(service.COLLECTION_ROOT, row['path']), service.COLLECTION_ROOT) == row['path']
        assert os.path.isfile(os.path.join(service.COLLECTION_ROOT, row['path'])), 'run `make collection`'


def test_a_wrong_secret_environment_is_named_without_its_value(spec):
    assert spec['secret_environment'].get('no_log') is True
    errors = service.validate(dict(VALID, secret_environment='hunter2-as-a-string'), spec)
    assert errors and errors[0].startswith('secret_environment: must be of type dict'), errors
    assert 'hunter2' not in ' '.join(errors), errors
