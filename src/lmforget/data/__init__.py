"""Upstream and task data: typed records, local/hub readers, one adapter per source format."""

from lmforget.data.load import load_task_family, load_tasks, load_upstream, load_upstream_arg
from lmforget.data.registry import TASKS, UPSTREAM
from lmforget.data.specs import TaskSpec, UpstreamSpec, task_spec, upstream_spec
from lmforget.data.types import Message, TaskExample, TaskSet, UpstreamExample, UpstreamSet

__all__ = [
    "Message", "TaskExample", "TaskSet", "UpstreamExample", "UpstreamSet", "TaskSpec", "UpstreamSpec",
    "TASKS", "UPSTREAM", "load_task_family", "load_tasks", "load_upstream", "load_upstream_arg", "task_spec",
    "upstream_spec",
]
