"""Imagination: rollouts the grounded LM writes for goal texts, and their validity checks.

- ``validity``: checks of one imagined rollout (goal met, agreement with the simulator,
  workbench, overlaps, absurd values, open-loop replay, cycle consistency) and their rates;
- ``generate``: ``imagine(...)`` writes a run folder of imagined rollouts with their validity;
- ``render``: an imagined rollout beside the simulator's replay of its actions, as MP4.

``generate`` and ``render`` are imported from their modules (they load torch and OpenGL).
"""

from kalm.imagine.validity import (
    ABSURD_COORD,
    FAILURE_TYPES,
    OVERLAP_DISTANCE,
    OVERLAP_MARGIN,
    REALISTIC_TOLERANCE,
    REQUIREMENTS,
    WORKBENCH_MARGIN,
    RolloutValidity,
    aggregate,
    check_rollout,
    filter_rollouts,
    replay_rollout,
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
