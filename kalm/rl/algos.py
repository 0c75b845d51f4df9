"""d3rlpy algorithms from a TrainConfig, and their weights in and out without pickles.

``build_algo(cfg, observation_size, action_size)`` creates the d3rlpy algorithm with the goal
encoder (``kalm.rl.encoder``) and its networks (``create_impl``), so a trained policy is rebuilt
from ``config.json`` alone; the weights then load from a safetensors file (``save_weights`` /
``load_weights``): nothing is unpickled. Training checkpoints (weights plus optimizer states)
are ``torch.save`` files read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kalm.rl.config import ALGOS, TrainConfig

DT_MAX_TIMESTEP = 1000
"""A Decision Transformer's largest episode step (its position table; longer episodes reuse the
last position)."""

__all__ = ["DT_MAX_TIMESTEP", "build_algo", "algo_modules", "save_weights", "load_weights", "save_training_state",
           "load_training_state", "device_name"]


def device_name(device: str) -> str:
    """d3rlpy's device string: ``cpu`` -> ``cpu:0``, ``cuda`` -> ``cuda:0``."""
    return device if ":" in device else f"{device}:0"


def build_algo(cfg: TrainConfig, observation_size: int, action_size: int, discrete: bool = True,
               device: str = "cpu", state_dim: int | None = None,
               action_range: tuple[float, float] = (-1.0, 1.0)):
    """The d3rlpy algorithm of ``cfg`` with its networks created (``create_impl``).

    ``state_dim``: the width of the state part of the observation (default: the state size of
    ``cfg.env``); ``action_range``: continuous actions' [low, high] (d3rlpy's actors act in
    [-1, 1]; another range is mapped to it with a fixed ``MinMaxActionScaler``).
    """
    import d3rlpy

    from kalm.envs import get_env
    from kalm.rl.config import algo_names
    from kalm.rl.encoder import GoalEncoderFactory

    info = ALGOS[cfg.algo]
    if info.discrete != discrete:
        kind = "discrete" if discrete else "continuous"
        raise ValueError(f"algorithm {cfg.algo!r} needs {'discrete' if info.discrete else 'continuous'} "
                         f"actions but this data has {kind} ones; use one of "
                         f"{', '.join(algo_names(discrete))}")
    if state_dim is None:
        state_dim = get_env(cfg.env).state.dim
    entities = list(get_env(cfg.env).policy_entities or []) if cfg.arch == "roles" else []
    enc = GoalEncoderFactory(state_dim=state_dim, state_units=cfg.state_units,
                             goal_units=cfg.goal_units, hidden_units=list(cfg.hidden_units),
                             fusion=cfg.fusion, state_features=cfg.state_features,
                             arch=cfg.arch, entities=entities, roles=cfg.roles,
                             entity_units=cfg.entity_units,
                             mention_slots=cfg.mentions if cfg.arch == "roles" else 0)
    common: dict[str, Any] = {"batch_size": cfg.batch_size, "gamma": cfg.gamma}
    low, high = float(action_range[0]), float(action_range[1])
    if not discrete and (low, high) != (-1.0, 1.0):
        import numpy as np

        common["action_scaler"] = d3rlpy.preprocessing.MinMaxActionScaler(
            minimum=np.full(action_size, low, np.float32),
            maximum=np.full(action_size, high, np.float32))
    A = d3rlpy.algos
    name = cfg.algo
    if name == "discrete_bc":
        conf = A.DiscreteBCConfig(learning_rate=cfg.lr, encoder_factory=enc, beta=cfg.bc_beta, **common)
    elif name == "discrete_cql":
        conf = A.DiscreteCQLConfig(learning_rate=cfg.lr, encoder_factory=enc, alpha=cfg.cql_alpha,
                                   target_update_interval=cfg.target_update_interval, **common)
    elif name == "double_dqn":
        conf = A.DoubleDQNConfig(learning_rate=cfg.lr, encoder_factory=enc,
                                 target_update_interval=cfg.target_update_interval, **common)
    elif name == "discrete_sac":
        conf = A.DiscreteSACConfig(actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr,
                                   temp_learning_rate=cfg.lr, actor_encoder_factory=enc,
                                   critic_encoder_factory=enc,
                                   target_update_interval=cfg.target_update_interval, **common)
    elif name in ("discrete_dt", "dt"):
        # a step is embedded by the fused MLP; gamma and the Q settings do not apply
        dt = dict(learning_rate=cfg.lr, encoder_factory=enc, batch_size=cfg.batch_size,
                  context_size=cfg.context_size, max_timestep=DT_MAX_TIMESTEP,
                  num_heads=cfg.dt_heads, num_layers=cfg.dt_layers)
        if name == "discrete_dt":
            conf = A.DiscreteDecisionTransformerConfig(**dt)
        else:
            conf = A.DecisionTransformerConfig(
                **dt, **({"action_scaler": common["action_scaler"]}
                         if "action_scaler" in common else {}))
    elif name == "nfq":
        conf = A.NFQConfig(learning_rate=cfg.lr, encoder_factory=enc, **common)
    elif name == "bc":
        conf = A.BCConfig(learning_rate=cfg.lr, encoder_factory=enc, **common)
    elif name == "cql":
        conf = A.CQLConfig(actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr,
                           actor_encoder_factory=enc, critic_encoder_factory=enc,
                           conservative_weight=cfg.cql_alpha, **common)
    elif name == "iql":
        conf = A.IQLConfig(actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr,
                           actor_encoder_factory=enc, critic_encoder_factory=enc,
                           value_encoder_factory=enc, **common)
    elif name == "td3_plus_bc":
        conf = A.TD3PlusBCConfig(actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr,
                                 actor_encoder_factory=enc, critic_encoder_factory=enc,
                                 alpha=cfg.td3bc_alpha, **common)
    elif name == "awac":
        conf = A.AWACConfig(actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr,
                            actor_encoder_factory=enc, critic_encoder_factory=enc,
                            lam=cfg.awac_lambda, **common)
    else:  # pragma: no cover - the registry and this switch are kept in step
        raise ValueError(f"no builder for algorithm {name!r}")
    algo = conf.create(device=device_name(device))
    algo.create_impl((observation_size,), action_size)
    if cfg.arch == "roles" and not info.sequence:
        from kalm.rl.encoder import init_action_heads

        init_action_heads(algo)
    return algo


def algo_modules(algo, with_optimizers: bool = False) -> dict[str, Any]:
    """The algorithm's networks (and optimizer wrappers) by name."""
    mods = algo.impl.modules.create_checkpointer(device_name("cpu")).modules
    return {k: v for k, v in mods.items()
            if with_optimizers or isinstance(v, torch.nn.Module)}


def save_weights(algo, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Every network's parameters and buffers in one safetensors file (keys ``module/param``)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, mod in algo_modules(algo).items():
        for k, v in mod.state_dict().items():
            tensors[f"{name}/{k}"] = v.detach().cpu().clone().contiguous()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata or {})
    tmp.chmod(0o644)
    tmp.replace(path)


def load_weights(algo, path: str | Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path), device="cpu")
    for name, mod in algo_modules(algo).items():
        prefix = f"{name}/"
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd and list(mod.state_dict()):
            raise ValueError(f"{path} holds no weights for the network {name!r}: it was saved by "
                             "another algorithm or architecture")
        try:
            mod.load_state_dict(sd)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"{path} does not fit the network {name!r} of the config "
                             f"({first})") from None


def save_training_state(algo, path: str | Path, extra: dict[str, Any]) -> None:
    """Networks, optimizer states and the torch RNG (torch.save; read with weights_only)."""
    states = {k: v.state_dict() for k, v in algo_modules(algo, with_optimizers=True).items()}
    torch.save({"modules": states, "torch_rng": torch.get_rng_state(), **extra}, str(path))


def load_training_state(algo, path: str | Path) -> dict[str, Any]:
    st = torch.load(str(path), map_location="cpu", weights_only=True)
    for k, v in algo_modules(algo, with_optimizers=True).items():
        v.load_state_dict(st["modules"][k])
    torch.set_rng_state(st["torch_rng"])
    return st
