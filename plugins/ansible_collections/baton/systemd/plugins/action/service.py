# -*- coding: utf-8 -*-
# Copyright (c) baton developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Controller side of the binary module baton.systemd.service.

Before anything is copied to the target, it
- validates the task's options against the module's argument spec, read from its sidecar
  documentation (plugins/modules/service.yml) with ansible-core's own doc reader and
  ArgumentSpecValidator, so a typo such as ``prot: 8080`` fails on the controller, naming it;
- finds out the target's OS, architecture and C library with one low-level command (once per
  host: the answer is kept as the fact ``baton_systemd_target``) and picks the module binary
  built for it from SHIPPED, or fails with one sentence naming what the target has and what
  the collection ships (never an exec-format or loader error on the target).

Then it runs the module as the normal action plugin would: check mode, diff mode, no_log and
async are the module's, passed through by ``_execute_module``.
"""

from __future__ import annotations

import os
import re

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import get_docstring
from ansible.utils.vars import merge_hash

COLLECTION = 'baton.systemd'
MODULE = COLLECTION + '.service'
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIDECAR = os.path.join(COLLECTION_ROOT, 'plugins', 'modules', 'service.yml')
FACT = 'baton_systemd_target'

# The module binaries the collection ships, one row per kind of target (first match wins):
# path (relative to the collection's root), OS (`uname -s`), architecture (`uname -m`), C
# library and its oldest version. Built by `make collection` (cargo-zigbuild against glibc 2.17).
SHIPPED = (
    {'path': 'plugins/modules/service', 'system': 'Linux', 'machine': 'x86_64', 'libc': 'glibc', 'min_libc': (2, 17)},
)

# One low-level command, no Python needed on the target: OS, architecture, then the C library
# (`getconf` answers "glibc 2.36" on glibc; musl's ldd says "musl libc (x86_64)").
PROBE = ("echo baton-probe; uname -s; uname -m; "
         "getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1 || echo unknown")

# The argument spec keys a sidecar's option documentation shares with ArgumentSpecValidator.
SPEC_KEYS = ('type', 'elements', 'choices', 'default', 'required', 'aliases', 'no_log')


def argument_spec(options):
    """The argument spec of documented options (``suboptions`` become ``options``)."""
    spec = {}
    for name, doc in (options or {}).items():
        entry = dict((key, doc[key]) for key in SPEC_KEYS if key in doc)
        if doc.get('suboptions'):
            entry['options'] = argument_spec(doc['suboptions'])
        spec[name] = entry
    return spec


# Options whose values are secrets (the module masks them in all it returns). Module docs have no
# `no_log` key (validate-modules refuses it), so the argument spec gets it here.
NO_LOG_OPTIONS = ('secret_environment',)


def module_argument_spec():
    """The module's argument spec, from its sidecar documentation."""
    doc = get_docstring(SIDECAR, fragment_loader, is_module=True, collection_name=COLLECTION)[0]
    if not doc or not doc.get('options'):
        raise AnsibleError('%s: no DOCUMENTATION.options in %s' % (MODULE, SIDECAR))
    spec = argument_spec(doc['options'])
    for name in NO_LOG_OPTIONS:
        if name in spec:
            spec[name]['no_log'] = True
    return spec


# ArgumentSpecValidator's messages (the same from ansible-core 2.15 to 2.19), rewritten as
# "<option>: <rule>" like the module's own.
_TYPE = r"(?:<class '[^']*'>|\S+)"
_MESSAGES = (
    (re.compile(r"^argument '(?P<opt>[^']+)' is of type " + _TYPE + r"(?: found in '(?P<ctx>[^']+)'\.)?"
                r" and we were unable to convert to (?P<want>\w+)", re.S),
     "{path}: must be of type {want}, got {value}"),
    (re.compile(r"^Elements value for option '(?P<opt>[^']+)'(?: found in '(?P<ctx>[^']+)')? is of type " + _TYPE
                + r" and we were unable to convert to (?P<want>\w+)", re.S),
     "{path}: every element must be of type {want}, got {value}"),
    (re.compile(r"^value of '(?P<opt>[^']+)' must be of type dict or list of dicts(?: found in '(?P<ctx>[^']+)')?", re.S),
     "{path}: must be of type dict, got {value}"),
    (re.compile(r"^value of (?P<opt>\S+) must be one of: (?P<choices>.*), got: (?P<got>.*?)(?: found in (?P<ctx>\S+))?$", re.S),
     "{path}: must be one of {choices}, got {got}"),
)
_REQUIRED = re.compile(r"^missing required arguments: (?P<opts>.*?)(?: found in (?P<ctx>\S+))?$", re.S)


_NAMED = re.compile(r'^[A-Za-z_][A-Za-z0-9_.]*: ')


def _lookup(args, path):
    value = args
    for part in path.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _secret(spec, path):
    """Whether ``path`` is (inside) an option declared no_log."""
    for part in path.split('.'):
        entry = (spec or {}).get(part) or {}
        if entry.get('no_log'):
            return True
        spec = entry.get('options')
    return False


def _rewrite(message, args, spec=None):
    required = _REQUIRED.match(message)
    if required:
        ctx = required.group('ctx')
        return '; '.join('%s%s: required option missing' % (ctx + '.' if ctx else '', name)
                         for name in required.group('opts').split(', '))
    for pattern, template in _MESSAGES:
        match = pattern.match(message)
        if match:
            fields = match.groupdict()
            ctx = fields.get('ctx')
            fields['path'] = '%s.%s' % (ctx, fields['opt']) if ctx else fields['opt']
            # A value of an option declared no_log (secret_environment) is never quoted.
            fields['value'] = ('a value not shown (the option is no_log)' if _secret(spec, fields['path'])
                               else repr(_lookup(args, fields['path'])))
            return template.format(**fields)
    return message


def validate(args, spec):
    """Errors of the task's options against the spec, each "<option>: <rule>" (empty when valid).

    Only checks: the module gets the options as written and converts them itself."""
    result = ArgumentSpecValidator(spec).validate(dict(args))
    errors = []
    unsupported = sorted('.'.join(p) if isinstance(p, tuple) else p for p in result.unsupported_parameters)
    for name in unsupported:
        parent = spec
        for part in name.split('.')[:-1]:
            parent = parent.get(part, {}).get('options', {})
        errors.append('%s: unknown option; the options%s are %s'
                      % (name, ' here' if '.' in name else '', ', '.join(sorted(parent))))
    rewritten = [_rewrite(error.msg, args, spec) for error in result.errors.errors if not isinstance(error, UnsupportedError)]
    # Messages that name no option (e.g. "dictionary requested, ...") repeat one that does.
    named = [message for message in rewritten if _NAMED.match(message)]
    for message in named or rewritten:
        if message not in errors:
            errors.append(message)
    return errors


def parse_probe(output):
    """The target as PROBE's output describes it: a dict of system, machine, libc, libc_version."""
    lines = [line.strip() for line in output.splitlines()]
    if 'baton-probe' not in lines:
        raise ValueError('unexpected answer to %r: %r' % (PROBE, output))
    lines = lines[lines.index('baton-probe') + 1:] + ['', '', '']
    system, machine, libc_line = lines[0], lines[1], lines[2]
    libc, version = 'unknown libc', None
    glibc = re.match(r'^glibc (\d+)\.(\d+)', libc_line)
    if glibc:
        libc, version = 'glibc', [int(glibc.group(1)), int(glibc.group(2))]
    elif 'musl' in libc_line.lower():
        libc = 'musl'
    return {'system': system or 'unknown OS', 'machine': machine or 'unknown architecture', 'libc': libc, 'libc_version': version}


def describe_target(target):
    text = '%s %s' % (target['system'], target['machine'])
    if target['system'] == 'Linux':
        version = target.get('libc_version')
        text += ' with %s%s' % (target['libc'], ' %d.%d' % tuple(version) if version else '')
    return text


def describe_shipped(row):
    return '%s %s with %s %d.%d or newer' % ((row['system'], row['machine'], row['libc']) + tuple(row['min_libc']))


def pick_binary(target, shipped=SHIPPED):
    """The SHIPPED row that runs on ``target``; raises ValueError with one sentence when none does."""
    for row in shipped:
        if (target['system'] == row['system'] and target['machine'] == row['machine'] and target['libc'] == row['libc']
                and target.get('libc_version') and tuple(target['libc_version']) >= tuple(row['min_libc'])):
            return row
    raise ValueError('%s cannot run on this target: it is %s, and the collection ships the module only for %s.'
                     % (MODULE, describe_target(target), ' or '.join(describe_shipped(row) for row in shipped)))


class ActionModule(ActionBase):
    """Validates the options, picks the module binary for the target, runs it."""

    _supports_check_mode = True
    _supports_async = True

    _baton_binary = None

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}

        errors = validate(self._task.args, module_argument_spec())
        if errors:
            result.update(failed=True, changed=False, msg='; '.join(errors))
            return result

        target = None if self._task.delegate_to else (task_vars.get('ansible_facts') or {}).get(FACT)
        probed = target is None
        if probed:
            answer = self._low_level_execute_command(PROBE, sudoable=False)
            try:
                target = parse_probe(answer.get('stdout', ''))
            except ValueError as e:
                result.update(failed=True, changed=False, msg='%s: cannot tell the target\'s OS and architecture: %s %s'
                              % (MODULE, e, answer.get('stderr', '').strip()))
                return result
        try:
            row = pick_binary(target)
        except ValueError as e:
            result.update(failed=True, changed=False, msg=str(e))
            return result
        self._baton_binary = os.path.join(COLLECTION_ROOT, row['path'])

        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if probed and not self._task.delegate_to:
            result.setdefault('ansible_facts', {})[FACT] = target
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _configure_module(self, module_name, module_args, task_vars):
        """As ActionBase's, with the module binary picked for the target as the file to ship."""
        built = super(ActionModule, self)._configure_module(module_name, module_args, task_vars)
        if self._baton_binary is None or module_name != self._task.action:
            return built
        if not os.path.isfile(self._baton_binary):
            raise AnsibleError('%s: the module binary %s is missing (build it with `make collection`)' % (MODULE, self._baton_binary))
        # The module's path is the last item (ansible-core 2.15: a 4-tuple; 2.19: a pair).
        return tuple(built[:-1]) + (self._baton_binary,)
