"""Policies for CLEVR-Robot: the scripted expert, the random floor, and (later) learned ones."""

from kalm.policy.base import Policy, RandomPolicy
from kalm.policy.expert import ExpertPolicy

__all__ = ["Policy", "RandomPolicy", "ExpertPolicy", "make_policy"]


def make_policy(spec: str, seed: int | None = None) -> Policy:
    """Build a policy from its command-line name: ``expert``, ``random`` or a run folder."""
    from pathlib import Path

    if spec == "expert":
        return ExpertPolicy(seed=seed)
    if spec == "random":
        return RandomPolicy(seed=seed)
    if spec.startswith("llm:"):
        raise ValueError(
            f"policy {spec!r}: the LLM-as-policy baseline needs a grounded LM, which this version "
            "cannot load yet; use 'expert' or 'random'"
        )
    path = Path(spec)
    if not path.exists():
        raise ValueError(
            f"policy {spec!r} is neither 'expert', 'random' nor an existing run folder; "
            "train one with `python -m kalm train ...` or use 'expert' / 'random'"
        )
    raise ValueError(
        f"{spec!r} is not a policy this version can load (trained-policy folders come with the "
        "offline RL stage); use 'expert' or 'random'"
    )
