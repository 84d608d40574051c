# Records the wall time of every task result (from the task's start to the host's result) as one
# JSON line in the file $BATON_TASK_TIMES names, for `make bench` (baton-ansible-bench).
import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: baton_task_times
type: aggregate
short_description: per-task wall times as JSON lines, for baton's benchmark
description:
  - Writes one JSON line per task result (task name, status, changed, seconds) to the file named
    by the environment variable BATON_TASK_TIMES.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "baton_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started = {}
        self._out = open(os.environ["BATON_TASK_TIMES"], "a", encoding="utf-8")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started[task._uuid] = time.perf_counter()

    def _record(self, result, status):
        now = time.perf_counter()
        started = self._started.get(result._task._uuid)
        if started is None:
            return
        line = {
            "task": result._task.get_name(),
            "status": status,
            "changed": bool(result._result.get("changed", False)),
            "seconds": now - started,
        }
        self._out.write(json.dumps(line) + "\n")
        self._out.flush()

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")
