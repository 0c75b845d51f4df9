"""Is an imagined rollout valid? Checks of one rollout against the goal and the simulator.

A rollout is ``observations`` ``s_0..s_T`` (``(T + 1, d)``; ``s_0`` comes from a real reset, the
rest were written by the LM), ``actions`` ``a_0..a_{T-1}`` and the goal it was asked for. Each
environment scores it (``Environment.check_rollout``) on the checks below and returns a
:class:`RolloutValidity`; this module holds that record and what is done with many of them
(rates per category, filtering). The rules as CLEVR-Robot applies them (its thresholds:
``kalm.envs.clevr.validity``); Meta-World's version of each (it cannot be set to a state, so
dynamics are judged by physical plausibility and by the open-loop replay from the seeded reset)
is in ``kalm.envs.metaworld.validity``, its extra measures in ``RolloutValidity.extra``:

==========================  ===================================================================
check                       rule
==========================  ===================================================================
goal met (match)            the goal holds on a generated state ``s_1..s_T``, judged against
                            ``s_0`` (a ``move`` goal only on ``s_1``: it is a one-push goal)
dynamics consistency        for each ``t``, ``env.simulate(s_t, a_t)`` against the imagined
                            ``s_{t+1}``: mean and max of the per-ball Euclidean error; the
                            transition is *realistic* when its max per-ball error is at most
                            ``REALISTIC_TOLERANCE``
out of workbench            a generated ball centre lies outside the workbench (x in [-0.6, 0.6],
                            y in [-0.3, 0.7]) by more than ``WORKBENCH_MARGIN``
overlap                     two generated ball centres closer than ``OVERLAP_DISTANCE``
absurd                      a generated coordinate is NaN, infinite or larger than
                            ``ABSURD_COORD`` in magnitude
open-loop replay            the imagined actions run in the real env from ``s_0``: the goal holds
                            at some step (``move``: after the one step)
cycle consistency           (optional, needs the LM) the LM's explanation of the rollout parses to
                            a goal equivalent to the intended one
true explanation            (with the explanation) it parses to a goal that the imagined rollout
                            made true (false on ``s_0``, true on ``s_T``), the intended one or
                            another: a rollout often makes several relations true, and then naming
                            another is an ambiguity, not a misreading. Informative, not a failure
==========================  ===================================================================

The checks on states (workbench, overlap, absurd) look at the generated states only: ``s_0`` is a
real reset. A transition from or to an absurd state cannot be simulated or measured: it counts as
unrealistic and its error is left out of the error means (``None``).

``aggregate`` turns many validities into per-category rates; ``filter_rollouts`` keeps the
episodes that pass chosen checks (for training on imagined data; off by default downstream).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Sequence

import numpy as np


__all__ = [
    "REALISTIC_TOLERANCE",
    "WORKBENCH_MARGIN",
    "OVERLAP_MARGIN",
    "OVERLAP_DISTANCE",
    "ABSURD_COORD",
    "FAILURE_TYPES",
    "REQUIREMENTS",
    "RolloutValidity",
    "check_rollout",
    "replay_rollout",
    "goal_met_at",
    "per_ball_errors",
    "aggregate",
    "validity_rates",
    "filter_rollouts",
]

FAILURE_TYPES: tuple[str, ...] = (
    "unmet_goal",
    "unrealistic_transition",
    "out_of_workbench",
    "overlap",
    "absurd",
    "replay_fails",
    "cycle_mismatch",
)
# Names accepted by filter_rollouts(require=...), each with the check it stands for.
REQUIREMENTS: dict[str, str] = {
    "goal_met": "the goal holds on a generated state (match)",
    "realistic": "every transition agrees with the simulator within REALISTIC_TOLERANCE",
    "in_workbench": "no generated state leaves the workbench",
    "no_overlap": "no generated state has overlapping balls",
    "finite": "no generated state is NaN, infinite or absurdly large",
    "replay": "the actions replayed in the simulator meet the goal",
    "cycle": "the LM's explanation names the same goal (when computed)",
}


@dataclass
class RolloutValidity:
    """Every check of one imagined rollout (see the module docstring)."""

    steps: int
    """Number of actions T."""
    goal_met: bool
    """The goal holds on a generated state (the match of KALM's match rate)."""
    success_step: int | None
    """First step t (1-based: the goal holds on s_t) where the goal holds, or None."""
    transitions: int
    """Transitions checked against the simulator (T)."""
    realistic_transitions: int
    """Transitions whose max per-ball error is at most REALISTIC_TOLERANCE."""
    first_unrealistic_step: int | None
    """First t (0-based) whose transition s_t -> s_{t+1} is unrealistic, or None."""
    dynamics_error_mean: float | None
    """Mean over measured transitions of the mean per-ball error (None if none measured)."""
    dynamics_error_max: float | None
    """Largest per-ball error over measured transitions (None if none measured)."""
    out_of_workbench_states: int
    """Generated states with a ball centre outside the workbench by more than the margin."""
    overlap_states: int
    """Generated states with two ball centres closer than OVERLAP_DISTANCE."""
    absurd_states: int
    """Generated states with a NaN, infinite or absurdly large coordinate."""
    replay_success: bool
    """The actions run open loop in the simulator from s_0 meet the goal."""
    replay_final_error: float | None
    """Mean per-ball distance between the imagined s_T and the replayed s_T (open-loop drift)."""
    explanation: str | None = None
    """The LM's explanation of the rollout (None when not computed)."""
    cycle_consistent: bool | None = None
    """The explanation parses to a goal equivalent to the intended one (None: not computed)."""
    explanation_true: bool | None = None
    """The explanation parses to a goal that the imagined rollout made true, the intended one or
    another (None: not computed)."""
    step_errors: list[float | None] = field(default_factory=list)
    """Max per-ball error of each transition (None where a state is absurd)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Measures an environment adds (Meta-World: floating objects, gripper jumps, per-step
    hand and object errors against the replay)."""

    # ----------------------------------------------------------------- derived
    @property
    def realistic(self) -> bool:
        """Every transition agrees with the simulator (vacuously true for T = 0)."""
        return self.realistic_transitions == self.transitions

    @property
    def out_of_workbench(self) -> bool:
        return self.out_of_workbench_states > 0

    @property
    def overlap(self) -> bool:
        return self.overlap_states > 0

    @property
    def absurd(self) -> bool:
        return self.absurd_states > 0

    def failure_types(self) -> list[str]:
        """What went wrong, in the order of ``FAILURE_TYPES`` (empty: a fully valid rollout)."""
        bad = {
            "unmet_goal": not self.goal_met,
            "unrealistic_transition": not self.realistic,
            "out_of_workbench": self.out_of_workbench,
            "overlap": self.overlap,
            "absurd": self.absurd,
            "replay_fails": not self.replay_success,
            "cycle_mismatch": self.cycle_consistent is False,
        }
        return [name for name in FAILURE_TYPES if bad[name]]

    def passes(self, requirement: str) -> bool:
        """Whether the rollout meets one of ``REQUIREMENTS`` (a cycle not computed passes)."""
        checks = {
            "goal_met": self.goal_met,
            "realistic": self.realistic,
            "in_workbench": not self.out_of_workbench,
            "no_overlap": not self.overlap,
            "finite": not self.absurd,
            "replay": self.replay_success,
            "cycle": self.cycle_consistent is not False,
        }
        if requirement not in checks:
            raise ValueError(
                f"unknown requirement {requirement!r}; choose from {', '.join(REQUIREMENTS)}"
            )
        return bool(checks[requirement])

    # ----------------------------------------------------------------- io
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields, plus the derived flags and ``failure_types``."""
        d = asdict(self)
        d.update(
            realistic=self.realistic,
            out_of_workbench=self.out_of_workbench,
            overlap=self.overlap,
            absurd=self.absurd,
            failure_types=self.failure_types(),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RolloutValidity":
        """Rebuild from ``to_dict()`` output (derived keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------------------------
# Many rollouts
# --------------------------------------------------------------------------------------------


def validity_rates(validities: Sequence[RolloutValidity]) -> dict[str, Any]:
    """The rates of ``aggregate`` over all of ``validities`` together."""
    vs = list(validities)
    n = len(vs)
    transitions = sum(v.transitions for v in vs)
    cycles = [v.cycle_consistent for v in vs if v.cycle_consistent is not None]
    true_accounts = [v.explanation_true for v in vs if v.explanation_true is not None]
    errors = [v.dynamics_error_mean for v in vs if v.dynamics_error_mean is not None]
    weights = [
        sum(e is not None for e in v.step_errors) for v in vs if v.dynamics_error_mean is not None
    ]

    def frac(flags: Iterable[bool]) -> float:
        return float(np.mean(list(flags))) if n else 0.0

    return {
        "rollouts": n,
        "match_rate": frac(v.goal_met for v in vs),
        "realistic_transition_rate": (
            sum(v.realistic_transitions for v in vs) / transitions if transitions else None
        ),
        "realistic_rollout_rate": frac(v.realistic for v in vs),
        "out_of_workbench_rate": frac(v.out_of_workbench for v in vs),
        "overlap_rate": frac(v.overlap for v in vs),
        "absurd_rate": frac(v.absurd for v in vs),
        "replay_success_rate": frac(v.replay_success for v in vs),
        "cycle_consistency": float(np.mean(cycles)) if cycles else None,
        "explanation_true_rate": float(np.mean(true_accounts)) if true_accounts else None,
        # per-transition mean per-ball error, averaged over all measured transitions
        "mean_dynamics_error": (
            float(np.average(errors, weights=weights)) if errors and sum(weights) else None
        ),
        "mean_steps": float(np.mean([v.steps for v in vs])) if n else 0.0,
        "fully_valid_rate": frac(not v.failure_types() for v in vs),
    }


def aggregate(
    validities: Sequence[RolloutValidity], categories: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Rates per category (in first-seen order), one ``categories[i]`` per validity.

    Each category gets ``rollouts``, ``match_rate``, ``realistic_transition_rate`` (fraction of
    all its transitions that are realistic), ``realistic_rollout_rate``, ``out_of_workbench_rate``,
    ``overlap_rate``, ``absurd_rate`` (fractions of rollouts with any such state),
    ``replay_success_rate``, ``cycle_consistency`` and ``explanation_true_rate`` (None when not
    computed),
    ``mean_dynamics_error``, ``mean_steps`` and ``fully_valid_rate``.
    """
    if len(validities) != len(categories):
        raise ValueError(
            f"one category per validity: got {len(validities)} validities and "
            f"{len(categories)} categories"
        )
    by_cat: dict[str, list[RolloutValidity]] = {}
    for v, c in zip(validities, categories):
        by_cat.setdefault(c, []).append(v)
    return {c: validity_rates(vs) for c, vs in by_cat.items()}


def filter_rollouts(
    episodes: Sequence, validities: Sequence[RolloutValidity],
    require: Sequence[str] = ("realistic", "goal_met"),
) -> list:
    """The episodes whose validity passes every check in ``require`` (see ``REQUIREMENTS``)."""
    if len(episodes) != len(validities):
        raise ValueError(
            f"one validity per episode: got {len(episodes)} episodes and "
            f"{len(validities)} validities"
        )
    unknown = [r for r in require if r not in REQUIREMENTS]
    if unknown:
        raise ValueError(
            f"unknown requirement {unknown[0]!r}; choose from {', '.join(REQUIREMENTS)}"
        )
    return [ep for ep, v in zip(episodes, validities) if all(v.passes(r) for r in require)]


# CLEVR-Robot's checks and thresholds under their historical names (``kalm.envs.clevr.validity``).
_CLEVR_NAMES = {"REALISTIC_TOLERANCE", "WORKBENCH_MARGIN", "OVERLAP_MARGIN", "OVERLAP_DISTANCE",
                "ABSURD_COORD", "check_rollout", "replay_rollout", "goal_met_at", "per_ball_errors"}


def __getattr__(name: str) -> Any:
    if name in _CLEVR_NAMES:
        import importlib

        return getattr(importlib.import_module("kalm.envs.clevr.validity"), name)
    raise AttributeError(f"module 'kalm.imagine.validity' has no attribute {name!r}")
