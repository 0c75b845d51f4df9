"""The typed configuration of offline RL training; saved as ``config.json`` in every train run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kalm.configio import JsonConfig

__all__ = ["TrainConfig", "ALGOS", "AlgoInfo", "canonical_algo", "FILTERS", "parse_filter",
           "RESUMABLE_FIELDS", "LEGACY_DEFAULTS", "AUTO_STATE_FEATURES", "algo_names",
           "check_algo_for"]


@dataclass(frozen=True)
class AlgoInfo:
    name: str
    d3rlpy_class: str
    discrete: bool
    description: str
    sequence: bool = False
    """Trained on sequences of an episode's steps (a Decision Transformer), not on transitions."""


# The algorithm registry: discrete ones train on discrete-action environments (CLEVR-Robot's
# Discrete(40)); continuous ones on continuous-action environments (Meta-World's Box(4)).
ALGOS: dict[str, AlgoInfo] = {a.name: a for a in (
    AlgoInfo("discrete_bc", "DiscreteBC", True, "behaviour cloning (the paper's CLEVR BC)"),
    AlgoInfo("discrete_cql", "DiscreteCQL", True, "conservative Q-learning (paper: alpha 10)"),
    AlgoInfo("double_dqn", "DoubleDQN", True, "double DQN (no conservatism: a plain Q baseline)"),
    AlgoInfo("discrete_sac", "DiscreteSAC", True, "soft actor-critic for discrete actions"),
    AlgoInfo("nfq", "NFQ", True, "neural fitted Q iteration"),
    AlgoInfo("discrete_dt", "DiscreteDecisionTransformer", True,
             "Decision Transformer: actions from the recent steps and the return to go (the "
             "paper's DT baseline)", sequence=True),
    AlgoInfo("bc", "BC", False, "behaviour cloning, continuous actions"),
    AlgoInfo("cql", "CQL", False, "conservative Q-learning, continuous actions"),
    AlgoInfo("iql", "IQL", False, "implicit Q-learning, continuous actions"),
    AlgoInfo("td3_plus_bc", "TD3PlusBC", False, "TD3+BC, continuous actions (paper: alpha 0.5)"),
    AlgoInfo("awac", "AWAC", False, "advantage-weighted actor-critic, continuous actions (paper: lambda 1)"),
    AlgoInfo("dt", "DecisionTransformer", False,
             "Decision Transformer, continuous actions", sequence=True),
)}

_ALIASES = {re.sub(r"[^a-z0-9]", "", k): k for k in ALGOS}
_ALIASES.update({re.sub(r"[^a-z0-9]", "", a.d3rlpy_class.lower()): k for k, a in ALGOS.items()})
_ALIASES.update({"td3bc": "td3_plus_bc", "ddqn": "double_dqn", "dbc": "discrete_bc",
                 "dcql": "discrete_cql", "dsac": "discrete_sac", "ddt": "discrete_dt",
                 "discretedecisiontransformer": "discrete_dt", "decisiontransformer": "dt"})


def canonical_algo(name: str) -> str:
    """``DiscreteBC``, ``discrete-bc``, ``TD3+BC`` ... -> the registry name; ValueError if unknown."""
    key = re.sub(r"[^a-z0-9]", "", name.lower().replace("+", "plus"))
    if key in _ALIASES:
        return _ALIASES[key]
    key2 = re.sub(r"[^a-z0-9]", "", name.lower())
    if key2 in _ALIASES:
        return _ALIASES[key2]
    raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGOS)}")


# Filters of imagined rollouts (their validity, from `imagine`): 'none', or a comma-separated
# list of requirements of kalm.imagine.validity.REQUIREMENTS ('match' = 'goal_met').
FILTERS = {
    "none": "keep every imagined rollout (KALM's setting)",
    "match": "the goal holds on a generated state",
    "goal_met": "the goal holds on a generated state",
    "realistic": "every transition agrees with the simulator",
    "replay": "the imagined actions replayed in the simulator meet the goal",
    "in_workbench": "no generated state leaves the workbench",
    "no_overlap": "no generated state has overlapping balls",
    "finite": "no generated state is NaN or absurd",
    "cycle": "the LM's explanation names the same goal",
}


def parse_filter(spec: str) -> list[str]:
    """``'none'`` -> []; ``'replay,realistic'`` -> requirement names (ValueError if unknown)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts or parts == ["none"]:
        return []
    bad = [p for p in parts if p not in FILTERS or p == "none"]
    if bad:
        raise ValueError(f"unknown filter {bad[0]!r}; choose 'none' or a comma-separated list of "
                         f"{', '.join(k for k in FILTERS if k != 'none')}")
    return list(dict.fromkeys("goal_met" if p == "match" else p for p in parts))


# Options that may change when a run is resumed (everything else must match config.json).
RESUMABLE_FIELDS = {"steps", "max_minutes", "eval_episodes"}

# Options added after configs were first saved, with the value that reproduces what a config
# written before them meant (a policy.json or config.json lacking the key gets this value).
LEGACY_DEFAULTS: dict[str, Any] = {"state_features": "raw", "env": "clevr", "td3bc_alpha": 0.5,
                                   "awac_lambda": 1.0, "arch": "mlp", "roles": 4,
                                   "entity_units": 64, "augment": 0, "mentions": 0}

# What state_features "auto" means where an environment's policy_defaults do not say (raw).
AUTO_STATE_FEATURES: dict[str, str] = {}


def algo_names(discrete: bool) -> list[str]:
    """The registry's algorithms for discrete (True) or continuous (False) actions."""
    return [k for k, a in ALGOS.items() if a.discrete == discrete]


def check_algo_for(algo: str, env) -> None:
    """ValueError unless the algorithm's action kind is the environment's (``env``: an Environment)."""
    info = ALGOS[canonical_algo(algo)]
    discrete = env.action.discrete
    if info.discrete != discrete:
        need = "discrete" if info.discrete else "continuous"
        have = "discrete" if discrete else "continuous"
        raise ValueError(f"algorithm {info.name!r} needs {need} actions but {env.title} has {have} "
                         f"ones; use one of {', '.join(algo_names(discrete))}")


@dataclass
class TrainConfig(JsonConfig):
    """Offline RL of a goal-conditioned policy on real (and imagined) rollouts."""

    KIND: ClassVar[str] = "training"
    LEGACY: ClassVar[dict[str, Any]] = LEGACY_DEFAULTS

    env: str = "clevr"
    """Environment of the data and the policy (kalm.envs): clevr or metaworld (the CLI's --env)."""
    algo: str = "discrete_bc"
    """Algorithm: discrete_bc, discrete_cql, double_dqn, discrete_sac, nfq, discrete_dt (discrete: CLEVR); bc, cql, iql, td3_plus_bc, awac, dt (continuous: Meta-World)."""
    real: str = ""
    """Real offline dataset (.npz from `python -m kalm collect`)."""
    imagined: list[str] = field(default_factory=list)
    """Imagined rollouts: `imagine` run folders or their imagined.npz (none: real data only)."""
    imagined_ratio: float = 0.5
    """Fraction of every batch drawn from imagined transitions (0.5 = 1:1, as in the paper)."""
    filter: str = "none"
    """Keep imagined rollouts that pass: none, or a comma list of match, replay, realistic, in_workbench, no_overlap, finite, cycle."""
    embedder: str = "minilm"
    """Goal text embedder: minilm (all-MiniLM-L6-v2, 384-d), hash:K (hashed bag of words) or st:DIR."""
    augment: int = 0
    """Symmetric copies of every episode, real and imagined alike (CLEVR: K random relabellings of the balls' colours, the text's colour words with them); 0 = none."""
    mentions: int = 0
    """Entity mentions joined to the goal embedding: which of the text's first M names of the state's entities (CLEVR: colour words) name each entity, handed to that entity in the roles network; 0 = none."""
    reward: str = "dense"
    """Reward label: dense or sparse."""
    steps: int = 20000
    """Gradient steps in all (may be raised when resuming)."""
    steps_per_epoch: int = 1000
    """Steps between metrics rows and checkpoints."""
    batch_size: int = 256
    """Transitions per gradient step."""
    lr: float = 3e-4
    """Learning rate (actor and critic alike)."""
    gamma: float = 0.99
    """Discount."""
    cql_alpha: float = 10.0
    """Weight of CQL's conservative loss, discrete and continuous (the paper used 10)."""
    td3bc_alpha: float = 0.5
    """TD3+BC's alpha: the weight of the Q term against behaviour cloning (the paper used 0.5)."""
    awac_lambda: float = 1.0
    """AWAC's lambda: the temperature of its advantage weights (the paper used 1)."""
    bc_beta: float = 0.5
    """DiscreteBC regulariser weight: d3rlpy adds beta * mean squared log-probability (a pull toward uniform)."""
    target_update_interval: int = 1000
    """Steps between target-network copies (Q-learning algorithms)."""
    hidden_units: list[int] = field(default_factory=lambda: [256, 256])
    """Layers of the fused MLP (the paper: 256 256)."""
    state_units: int = 128
    """Width of the state branch."""
    goal_units: int = 128
    """Width of the goal-embedding projection."""
    fusion: str = "concat"
    """How state and goal features meet: concat or film."""
    state_features: str = "auto"
    """State branch input: raw (the state vector), pairwise (CLEVR: plus every ball pair's dx, dy and distance) or auto (pairwise on CLEVR, raw elsewhere)."""
    arch: str = "auto"
    """Network: mlp (state and goal branches fused by an MLP), roles (goal-steered roles over the state's entities, one shared scoring net per entity: CLEVR's balls) or auto (the environment's choice)."""
    roles: int = 4
    """Soft roles (arch roles): how many entities the goal can single out at once."""
    entity_units: int = 64
    """Width of the per-entity networks (arch roles)."""
    context_size: int = 10
    """Decision Transformer (discrete_dt, dt): steps of an episode it reads at once."""
    dt_layers: int = 3
    """Decision Transformer: attention blocks."""
    dt_heads: int = 4
    """Decision Transformer: attention heads (they divide the encoder's width, hidden_units[-1])."""
    seed: int = 0
    """Seed of initialisation and batch sampling."""
    eval_episodes: int = 0
    """Evaluate in the simulator at every epoch end on this many episodes of eval_suite (0 = never)."""
    eval_suite: str = "train"
    """Goal suite(s) of the per-epoch evaluation (comma-separated)."""
    max_minutes: float = 0.0
    """Stop (with a checkpoint and a policy) after this many minutes; 0 = no limit."""

    def validate(self) -> "TrainConfig":
        from kalm.envs.base import SUITES
        from kalm.rl.embed import check_embedder_name
        from kalm.rl.encoder import FUSIONS, STATE_FEATURES

        from kalm.envs import env_names

        self.algo = canonical_algo(self.algo)
        if self.env not in env_names():
            raise ValueError(f"unknown env {self.env!r}; choose one of: {', '.join(env_names())}")
        from kalm.envs import get_env
        from kalm.rl.encoder import ARCHS

        environment = get_env(self.env)
        chosen = dict(environment.policy_defaults)
        if self.state_features == "auto":
            self.state_features = chosen.get("state_features",
                                             AUTO_STATE_FEATURES.get(self.env, "raw"))
        if self.state_features == "pairwise" and chosen.get("state_features") != "pairwise":
            raise ValueError(f"state_features 'pairwise' is made for CLEVR-Robot's ball positions; "
                             f"use raw (or auto) with env {self.env!r}")
        sequence = ALGOS[self.algo].sequence
        if self.arch == "auto":
            # a Decision Transformer embeds each step with the fused MLP (its width is the
            # transformer's); the roles network's output is action scores
            self.arch = "mlp" if sequence else chosen.get("arch", "mlp")
        if sequence and self.arch != "mlp":
            raise ValueError(f"{self.algo} embeds each step with the mlp network; use --arch mlp "
                             "(or auto)")
        if sequence:
            if self.context_size < 1 or self.dt_layers < 1 or self.dt_heads < 1:
                raise ValueError("context_size, dt_layers and dt_heads must be at least 1")
            if self.hidden_units and int(self.hidden_units[-1]) % self.dt_heads:
                raise ValueError(f"dt_heads ({self.dt_heads}) must divide the step embedding's "
                                 f"width, hidden_units[-1] ({self.hidden_units[-1]})")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)} or auto; got {self.arch!r}")
        if self.arch == "roles" and not environment.policy_entities:
            raise ValueError(f"arch 'roles' needs a state of like entities with per-entity actions; "
                             f"{environment.title} declares none (use mlp)")
        if self.augment < 0:
            raise ValueError(f"augment must be 0 or more; got {self.augment}")
        if self.augment and not environment.provides("relabel_episode"):
            raise ValueError(f"--augment needs a symmetry of the environment; {environment.title} "
                             "states none (use --augment 0)")
        from kalm.rl.embed import check_mentions

        check_mentions(environment, self.mentions)
        if self.roles < 1 or self.entity_units < 1:
            raise ValueError("roles and entity_units must be at least 1")
        self.imagined = [str(p) for p in self.imagined]
        try:
            self.hidden_units = [int(u) for u in self.hidden_units]
        except (TypeError, ValueError):
            raise ValueError(f"hidden_units must be integers; got {self.hidden_units}") from None
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError("hidden_units must be one or more positive integers")
        if self.reward not in ("dense", "sparse"):
            raise ValueError(f"reward must be 'dense' or 'sparse'; got {self.reward!r}")
        if not 0.0 <= self.imagined_ratio <= 1.0:
            raise ValueError(f"imagined_ratio must be in [0, 1]; got {self.imagined_ratio}")
        parse_filter(self.filter)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {self.fusion!r}")
        if self.state_features not in STATE_FEATURES:
            raise ValueError(f"state_features must be one of {', '.join(STATE_FEATURES)}; got "
                             f"{self.state_features!r}")
        for name in ("steps", "steps_per_epoch", "batch_size", "target_update_interval",
                     "state_units", "goal_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.td3bc_alpha < 0 or self.awac_lambda <= 0:
            raise ValueError("td3bc_alpha must be 0 or more and awac_lambda positive")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1]; got {self.gamma}")
        if self.eval_episodes < 0 or self.max_minutes < 0:
            raise ValueError("eval_episodes and max_minutes must be 0 or more")
        bad = [s for s in self.eval_suite.split(",") if s not in SUITES and s != "all"]
        if bad:
            raise ValueError(f"unknown eval_suite {bad[0]!r}; choose from {', '.join(SUITES)}")
        check_embedder_name(self.embedder)
        return self
