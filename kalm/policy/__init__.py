"""Policies: each environment's scripted expert, the random floor, and trained ones (``kalm.rl``)."""

from typing import Any

from kalm.policy.base import Policy, RandomPolicy


def __getattr__(name: str) -> Any:
    if name == "ExpertPolicy":  # CLEVR-Robot's, for old imports; envs give theirs: env.expert()
        from kalm.envs.clevr.expert import ExpertPolicy

        return ExpertPolicy
    raise AttributeError(f"module 'kalm.policy' has no attribute {name!r}")


__all__ = ["Policy", "RandomPolicy", "ExpertPolicy", "make_policy"]


def make_policy(spec: str, seed: int | None = None, env=None) -> Policy:
    """Build a policy from its command-line name: ``expert``, ``random`` or a train run folder
    (``kalm.rl.policy.TrainedPolicy``), for the environment ``env`` (default CLEVR-Robot)."""
    from pathlib import Path

    from kalm.envs import DEFAULT_ENV, get_env

    environment = get_env(env)
    if environment.name != DEFAULT_ENV and spec not in ("expert", "random"):
        environment.require_stage("train")
    if spec == "expert":
        return environment.expert(seed=seed, noise=0.0)
    if spec == "random":
        return environment.random_policy(seed=seed)
    if spec.startswith("llm:"):
        from kalm.policy.llm import LLMPolicy

        folder = spec[len("llm:"):]
        if not folder or not Path(folder).exists():
            raise ValueError(
                f"policy {spec!r}: {folder!r} is not a grounded model folder; pass llm:DIR with "
                "DIR a `python -m kalm ground` run or assets/grounded/clevr")
        try:
            return LLMPolicy(folder)
        except FileNotFoundError as exc:
            raise ValueError(f"policy {spec!r}: {exc}") from None
    path = Path(spec)
    if not path.exists():
        raise ValueError(
            f"policy {spec!r} is neither 'expert', 'random' nor an existing run folder; "
            "train one with `python -m kalm train ...` or use 'expert' / 'random'"
        )
    from kalm.rl.policy import TrainedPolicy, describe_run_folder, policy_dir

    if policy_dir(path) is None:
        raise ValueError(describe_run_folder(path))
    return TrainedPolicy.load(path)
