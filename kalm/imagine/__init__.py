"""Imagination: rollouts the grounded LM writes for goal texts, and their validity checks.

- ``validity``: the record of one imagined rollout's checks (goal met, realistic transitions,
  workspace, overlaps, absurd values, open-loop replay, cycle consistency; each environment
  scores them, ``Environment.check_rollout``) and their rates;
- ``generate``: ``imagine(...)`` writes a run folder of imagined rollouts with their validity;
- ``render``: an imagined rollout beside the simulator's replay of its actions, as MP4.

``generate`` and ``render`` are imported from their modules (they load torch and OpenGL).
CLEVR-Robot's checks and thresholds (``check_rollout``, ``REALISTIC_TOLERANCE``, ...) are served
under these historical names on first use (``kalm.envs.clevr.validity``).
"""

from typing import Any

from kalm.imagine.validity import (
    FAILURE_TYPES,
    REQUIREMENTS,
    RolloutValidity,
    aggregate,
    filter_rollouts,
    validity_rates,
)

__all__ = [
    "ABSURD_COORD",
    "FAILURE_TYPES",
    "OVERLAP_DISTANCE",
    "OVERLAP_MARGIN",
    "REALISTIC_TOLERANCE",
    "REQUIREMENTS",
    "WORKBENCH_MARGIN",
    "RolloutValidity",
    "aggregate",
    "check_rollout",
    "filter_rollouts",
    "replay_rollout",
    "validity_rates",
]


def __getattr__(name: str) -> Any:
    from kalm.imagine import validity

    if name in validity._CLEVR_NAMES:
        return getattr(validity, name)
    raise AttributeError(f"module 'kalm.imagine' has no attribute {name!r}")
