"""Offline RL: goal-conditioned policies learned with d3rlpy from real and imagined rollouts.

- ``kalm.rl.embed``    goal-text embedders (all-MiniLM-L6-v2 by default, ``hash:K`` for tests)
- ``kalm.rl.encoder``  the d3rlpy encoder over ``[state | goal embedding]`` observations
- ``kalm.rl.data``     transition tables and the real/imagined mixed batch sampler
- ``kalm.rl.config``   ``TrainConfig`` and the algorithm registry
- ``kalm.rl.algos``    d3rlpy algorithms from a config; weights as safetensors
- ``kalm.rl.train``    ``train_policy``: the resumable training run
- ``kalm.rl.policy``   ``TrainedPolicy``: a trained run folder as a ``kalm.policy.Policy``

Importing this package is cheap; d3rlpy and torch load when a submodule needs them.
"""

from kalm.rl.config import ALGOS, TrainConfig

__all__ = ["ALGOS", "TrainConfig", "train_policy", "TrainedPolicy"]


def __getattr__(name: str):
    if name == "train_policy":
        from kalm.rl.train import train_policy

        return train_policy
    if name == "TrainedPolicy":
        from kalm.rl.policy import TrainedPolicy

        return TrainedPolicy
    raise AttributeError(name)
