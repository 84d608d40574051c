"""Offline stand-in for get-pip.py, which ansible-test downloads from ci-files.testing.ansible.com
to bootstrap pip into the empty venvs of its sanity and unit tests (unreachable here).

mk/ansible.mk puts this file where ansible-test caches get-pip (~/.ansible/test/cache/
get_pip_<version>.py, under a private HOME), so ansible-test runs it instead: pip comes from
the interpreter's own `ensurepip`, then the pinned versions ansible-test asks for from the
package index. Called as `python get_pip.py [pip options] pip==X [setuptools==Y ...]`.
"""
import subprocess
import sys

ARGS = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet'] + ARGS)
