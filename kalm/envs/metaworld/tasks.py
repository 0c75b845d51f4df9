"""Meta-World tasks as KALM uses them (the paper's split), and the goal object of this environment.

A goal here is a task: ``TaskGoal("door-open")``. Texts in the goal language (``language.py``)
map to tasks; success and rewards of a task are judged from the 91-d state (``state.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = [
    "COMPOSITE_TASKS",
    "DATA_TASKS",
    "EASY_TASKS",
    "HARD_TASKS",
    "ALL_TASKS",
    "TaskGoal",
    "suite_tasks",
]

# Tasks with offline data (the train and rephrase suites).
DATA_TASKS = (
    "reach",
    "push",
    "pick-place",
    "button-press",
    "door-unlock",
    "door-open",
    "window-open",
    "faucet-open",
    "coffee-push",
    "coffee-button",
)
# Unseen tasks close to the data: walls in the way, or the reverse of a seen motion.
EASY_TASKS = (
    "reach-wall",
    "push-wall",
    "pick-place-wall",
    "button-press-wall",
    "door-lock",
    "door-close",
    "window-close",
    "faucet-close",
)
# Unseen tasks that need new skills or chain two seen ones. The two composite tasks are built
# here as MuJoCo scenes that chain the sub-tasks' success (``composite.py``).
COMPOSITE_TASKS = {
    "make-coffee": ("coffee-push", "coffee-button"),
    "locked-door-open": ("door-unlock", "door-open"),
}
HARD_TASKS = ("make-coffee", "locked-door-open", "hammer", "soccer")
ALL_TASKS = DATA_TASKS + EASY_TASKS + HARD_TASKS

_SUITE_TASKS = {"train": DATA_TASKS, "rephrase": DATA_TASKS, "easy": EASY_TASKS, "hard": HARD_TASKS}


def suite_tasks(suite: str) -> tuple[str, ...]:
    """The tasks of a suite (train and rephrase share the data tasks)."""
    try:
        return _SUITE_TASKS[suite]
    except KeyError:
        raise ValueError(f"unknown suite {suite!r}; valid: {', '.join(_SUITE_TASKS)}") from None


@dataclass(frozen=True)
class TaskGoal:
    """Solve the Meta-World task ``task`` (one of :data:`ALL_TASKS`)."""

    task: str
    kind: str = field(default="task", init=False)

    def __post_init__(self) -> None:
        if self.task not in ALL_TASKS:
            raise ValueError(f"unknown Meta-World task {self.task!r}; known: {', '.join(ALL_TASKS)}")

    def to_dict(self) -> dict:
        return {"kind": "task", "task": self.task}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskGoal":
        if not isinstance(d, Mapping) or d.get("kind", "task") != "task" or "task" not in d:
            raise ValueError(f'a Meta-World goal is {{"kind": "task", "task": NAME}}; got {d!r}')
        return cls(str(d["task"]))

    def holds(self, obs, start_obs=None) -> bool:
        from kalm.envs.metaworld.success import task_success

        return bool(task_success(self.task, obs))

    def __str__(self) -> str:
        return self.task
