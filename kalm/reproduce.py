"""Reproduce KALM's comparison end to end: ``python -m kalm reproduce --preset cpu``.

One command runs the whole pipeline into one folder ``OUT`` and writes a results table that sets
every method's success per goal category beside the paper's figures:

=========  =======================================================================================
stage      what it runs (the project's own commands; ``--jobs``) and what it writes
=========  =======================================================================================
collect    ``collect`` relation goals, aim expert, noise 0.03 -> ``OUT/data/real.npz`` (the settings
           of the shipped grounded model's data, ``assets/data/aim4k.npz``)
ground     ``ground --data OUT/data/real.npz --preset P`` -> ``OUT/ground/`` (skipped with
           ``--grounded DIR``: that model is used and recorded as reused)
imagine    ``imagine`` per novel suite (rephrase, easy, hard) with the grounded model, on the
           evaluation's goal items (``OUT/goals/SUITE.jsonl``: the suite drawn with the evaluation
           seed) from initial states of another seed (``imagine_seed``) -> ``OUT/imagine/SUITE/``
oracle     ``collect --suite SUITE`` expert episodes of the same goals -> ``OUT/oracle/SUITE.npz``
train      ``train`` per method and seed -> ``OUT/train/METHOD-sSEED/``:
           ``kalm`` real + imagined (ratio 0.5, filter none: KALM's setting),
           ``kalm_filtered`` the same keeping only imagined rollouts that pass ``filter``,
           ``real_only`` real data alone (the paper's baseline),
           ``oracle`` real + the oracle episodes (same ratio: an upper reference)
evaluate   every trained policy, ``random`` (floor) and ``llm:GROUNDED`` (the grounded LM as a
           policy, once, on ``llm_episodes`` per category: it is slow) on train, rephrase, easy,
           hard with the same seed -> ``OUT/eval/POLICY.json``
results    ``OUT/results.json`` and ``OUT/results.md``
=========  =======================================================================================

Rerunning the same command reuses what is done: ``OUT/stages.json`` records each stage's state,
its settings, its wall time (summed over sittings) and its units (one collect, one imagine per
suite, one train per method and seed, one evaluation per policy). A finished unit is skipped; an
unfinished one reruns its command, which resumes from its own saved work (collect parts, grounding
and training checkpoints, imagine parts). Raising ``--seeds`` adds units; changing a setting of a
finished stage is refused (use another ``--out``), except for the evaluation, which is redone.
``--stages`` runs a subset (the stages it needs must be done already).

``--jobs N`` (default: 2 on 2 cores or more) runs the units on N fresh worker processes with
cores / N CPU threads each: a unit starts once the stages it needs are done (imagination beside
the oracle data and the real-data policies); ``--jobs 1`` runs them here, one after another.

Environments: ``--env clevr`` (the default, as above) or ``--env metaworld``; every stage talks
to the environment interface (``kalm.envs``): its suites, expert, goal items and simulators. An
environment's presets (``ENV_PRESETS``) replace CLEVR's sizes: Meta-World's ``cpu`` preset uses
its scripted expert, trains every method with BC and TD3+BC (``algos``: one policy per method,
algorithm and seed, ``OUT/train/METHOD-ALGO-sSEED/`` when there are several algorithms) and sets
its results beside the paper's Meta-World bar charts.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kalm.runs import write_json_atomic

__all__ = ["PRESETS", "ENV_PRESETS", "STAGES", "METHODS", "NOVEL", "CATEGORIES", "PAPER",
           "PAPER_BY_ENV", "ReproduceConfig", "ReproduceError", "reproduce", "make_config",
           "policy_key"]

STAGES = ("collect", "ground", "imagine", "oracle", "train", "evaluate", "results")
METHODS = ("kalm", "kalm_filtered", "real_only", "oracle")
NOVEL = ("rephrase", "easy", "hard")
CATEGORIES = ("train", *NOVEL)

# The published figures (../shared/spec/clevr_robot.md): success over the novel goals, match rates
# of the generated rollouts, and ImagineBench's hard-task figures.
PAPER: dict[str, Any] = {
    "novel_mean": {
        "bc": {"kalm": 46.0, "real_only": 26.0,
               "note": "KALM (Llama-2-7B, 100k pairs) 46% over 1,400 novel goals vs 26% for the "
                       "best baseline on real data alone"},
        "cql": {"kalm": 27.1, "real_only": 15.5, "note": "with CQL: 27.1% vs 15.5%"},
    },
    "match_rate": {"rephrase": 85.0, "easy": 36.0, "hard": 28.0},
    "imaginebench_hard": {"kalm": 35.44, "oracle": 64.37,
                          "note": "ImagineBench (the authors' follow-up): offline RL on imaginary "
                                  "rollouts 35.44% on hard tasks vs 64.37% on real rollouts of "
                                  "those tasks"},
}


# Meta-World (../shared/spec/kalm_method.md, "Meta-World"): the paper shows bar charts only, whose
# axes top out at these figures per category, so its per-category success lies below them.
PAPER_METAWORLD: dict[str, Any] = {
    "category_upper": {"train": 50.0, "rephrase": 30.0, "easy": 14.0, "hard": 8.0},
    "note": "the paper's Meta-World bar charts (TD3+BC, CQL, BC, AWAC with and without KALM; last "
            "5 checkpoints, 3 seeds) have axes topping out at 50 / 30 / 14 / 8% for train / "
            "rephrase / easy / hard, so its per-category figures lie below those",
    "unrealistic": {"floating": {"rephrase": 39.5, "easy": 35.5, "hard": 22.3},
                    "beyond_dynamics": {"rephrase": 44.6, "easy": 47.9, "hard": 31.1}},
}
PAPER_BY_ENV: dict[str, dict[str, Any]] = {"clevr": PAPER, "metaworld": PAPER_METAWORLD}

_ALGO_LABELS = {"bc": "BC", "td3_plus_bc": "TD3+BC", "cql": "CQL", "iql": "IQL", "awac": "AWAC",
                "discrete_bc": "DiscreteBC", "discrete_cql": "DiscreteCQL",
                "discrete_dt": "DiscreteDecisionTransformer", "dt": "DecisionTransformer"}

# The Decision Transformer baseline's network and batches (CLEVR-Robot's expert episodes are 5.3
# steps on average: a window of 5 steps sees most of one; 64 windows of 5 = 320 steps a batch,
# about BC's 256 transitions; a 128-wide step embedding, 3 blocks of 4 heads).
DT_ARGS = ("--context-size", "5", "--batch-size", "64", "--hidden-units", "128", "128",
           "--dt-layers", "3", "--dt-heads", "4")


class ReproduceError(ValueError):
    """The pipeline cannot go on; the message says why and what to do."""


@dataclass
class ReproduceConfig:
    """Settings of one reproduction (a preset plus command-line overrides); saved in OUT."""

    preset: str = "cpu"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Training seeds (one policy per method and seed)."""
    # --- real data
    real_episodes: int = 4000
    real_seed: int = 1
    real_noise: float = 0.03
    expert: str = "aim"
    # --- grounding
    grounded: str = ""
    """A grounded model folder to use instead of grounding one (the ground stage is skipped)."""
    lm: str = ""
    """Base LM of the ground stage (packaged name or local HF folder); '' = the preset's."""
    ground_preset: str = "cpu"
    ground_args: list[str] = field(default_factory=list)
    """Extra `ground` options, e.g. ['--steps', '400', '--init-from', 'assets/grounded/clevr']."""
    # --- imagination
    imagine_seed: int = 1000
    """Seed of the imagined rollouts' initial states (differs from eval_seed)."""
    imagine_goals: dict[str, int] = field(default_factory=lambda: {"rephrase": 400, "easy": 100,
                                                                   "hard": 110})
    """Goal items imagined per novel suite (spread over the suite; 0 or more than it has = all)."""
    imagine_per_goal: dict[str, int] = field(default_factory=lambda: {"rephrase": 1, "easy": 20,
                                                                      "hard": 1})
    imagine_batch: int = 32
    imagine_max_steps: int = 0
    """Cap on imagined rollout length (0 = the goal's horizon, 50)."""
    imagine_guide: int = 0
    """Goal-guided decoding of the imagine stage (``imagine --guide K``; 0 = greedy, as
    published)."""
    imagine_guide_horizon: int = 1
    """Look-ahead of that guided decoding (``imagine --guide-horizon H``, continuous actions:
    each candidate scored by the predicted state H steps on)."""
    imagine_guide_obstacles: bool = False
    """That guided decoding rules out candidates whose predicted path crosses a wall of the
    goal's scene (``imagine --guide-obstacles``; the scene's geometry, not the LM's knowledge)."""
    imagine_settle: int = 0
    """Steps the LM goes on writing after an imagined rollout's goal first holds (``imagine
    --settle N``; 0 = it stops there, as published)."""
    explain: bool = False
    """Ask the LM to explain each rollout (only the 'cycle' filter needs it; +50% time)."""
    # --- oracle data
    oracle_episodes: dict[str, int] = field(default_factory=dict)
    """Expert episodes per novel suite; empty (the default) = as many as the suite's imagined
    rollouts (goals imagined x imagine_per_goal: parity with the data it stands beside)."""
    # --- offline RL
    algo: str = "discrete_bc"
    steps: int = 10000
    """Gradient steps per policy (every algorithm not in ``algo_steps``)."""
    algo_steps: dict[str, int] = field(default_factory=dict)
    """Gradient steps of the named algorithms' policies, overriding ``steps`` (``--algo-steps
    ALGO=N``); CLEVR's cpu preset: DiscreteCQL 10,000 beside BC's 20,000."""
    steps_per_epoch: int = 1000
    embedder: str = "minilm"
    """Goal embedder of every policy (a `train --embedder` name), or ``grounded``: ``lm:`` of the
    run's grounded model (--grounded DIR, else OUT/ground), CLEVR's cpu preset default."""
    imagined_ratio: float = 0.5
    filter: str = "match,realistic"
    """Filter of kalm_filtered (kalm itself keeps every rollout, as the paper)."""
    train_args: list[str] = field(default_factory=list)
    """Extra `train` options for every method (e.g. ['--batch-size', '128'])."""
    # --- evaluation
    eval_seed: int = 0
    episodes: int = 50
    """Evaluation episodes per category for every policy."""
    llm_episodes: int = 20
    """Episodes per category for the LLM-as-policy baseline (0 = skip it)."""
    random_baseline: bool = True
    # --- environment (CLEVR's runs keep these defaults)
    env: str = "clevr"
    """Environment of every stage (kalm.envs): clevr or metaworld (``--env``)."""
    algos: list[str] = field(default_factory=list)
    """Algorithms trained for every method and seed, one policy each; empty = [algo]."""
    llm_context: int = 0
    """Past steps the LLM-as-policy's prompt keeps (0 = LLMPolicy's default)."""
    # --- protocol
    checkpoints: int = 5
    """A trained policy's score: the mean over its last this many checkpoints (the train runs'
    snapshots of their last epoch ends; the final policy when a run has none). The paper: 5."""
    volume: str = "preset"
    """Imagined-data volume: ``preset`` (the preset's imagine_goals x imagine_per_goal) or
    ``paper`` (the paper's: CLEVR 5,600 rephrase, 72,400 easy, 1,680 hard rollouts)."""
    oracle_parity: bool = False
    """Set by validate: oracle_episodes were derived from the imagined volume (not given)."""
    # --- the Decision Transformer baseline (the paper's third baseline: real data only)
    dt_steps: int = 0
    """Gradient steps of the Decision Transformer trained on the real data, one per seed (0 =
    no DT baseline); CLEVR's cpu preset: 5,000."""
    dt_args: list[str] = field(default_factory=lambda: list(DT_ARGS))
    """Its `train` options (besides --steps, --seed, --embedder and the data)."""

    def validate(self) -> "ReproduceConfig":
        from kalm.envs import get_env
        from kalm.rl.config import canonical_algo, check_algo_for, parse_filter

        try:
            environment = get_env(self.env)
            environment.require_stage("reproduce")
        except ValueError as e:
            raise ReproduceError(str(e)) from None

        if not self.seeds:
            raise ReproduceError("--seeds needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ReproduceError("--seeds must be distinct non-negative integers; "
                                 f"got {self.seeds}")
        for name in ("real_episodes", "steps", "steps_per_epoch", "episodes", "imagine_batch"):
            if getattr(self, name) < 1:
                raise ReproduceError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.llm_episodes < 0 or self.imagine_max_steps < 0 or self.imagine_guide < 0:
            raise ReproduceError("llm_episodes, imagine_max_steps and imagine_guide must be 0 or "
                                 "more")
        if self.imagine_guide_horizon < 1:
            raise ReproduceError("--imagine-guide-horizon must be at least 1; got "
                                 f"{self.imagine_guide_horizon}")
        if self.imagine_guide_horizon > 1 and not self.imagine_guide:
            raise ReproduceError("--imagine-guide-horizon needs --imagine-guide K (it is the "
                                 "look-ahead of goal-guided decoding)")
        if self.imagine_guide_obstacles and self.imagine_guide < 2:
            raise ReproduceError("--imagine-guide-obstacles needs --imagine-guide K (K >= 2: it "
                                 "rules out goal-guided candidates)")
        if self.imagine_settle < 0:
            raise ReproduceError(f"--imagine-settle must be 0 or more; got {self.imagine_settle}")
        if self.imagine_seed == self.eval_seed:
            raise ReproduceError("imagine_seed must differ from eval_seed (imagined initial states "
                                 "must not be the evaluation's)")
        if self.dt_steps < 0:
            raise ReproduceError(f"--dt-steps must be 0 or more; got {self.dt_steps}")
        for name, n in self.algo_steps.items():
            if not isinstance(n, int) or n < 1:
                raise ReproduceError(f"--algo-steps {name}={n}: steps must be at least 1")
        if self.volume not in VOLUMES:
            raise ReproduceError(f"--volume must be one of {', '.join(VOLUMES)}; got "
                                 f"{self.volume!r}")
        from kalm.rl.train import SNAPSHOTS_KEPT

        if not 1 <= self.checkpoints <= SNAPSHOTS_KEPT:
            raise ReproduceError(f"checkpoints must be 1 to {SNAPSHOTS_KEPT} (the snapshots a "
                                 f"train run keeps); got {self.checkpoints}")
        for d in (self.imagine_goals, self.imagine_per_goal):
            if set(d) != set(NOVEL) or min(d.values()) < 0:
                raise ReproduceError(f"per-suite sizes need rephrase, easy, hard >= 0; got {d}")
        if not self.oracle_episodes or self.oracle_parity:
            # parity: the oracle's expert episodes match the imagined rollouts per suite
            self.oracle_episodes = imagined_volume(self, environment)
            self.oracle_parity = True
        for d in (self.imagine_goals, self.imagine_per_goal, self.oracle_episodes):
            if set(d) != set(NOVEL) or min(d.values()) < 0:
                raise ReproduceError(f"per-suite sizes need rephrase, easy, hard >= 0; got {d}")
        if min(self.imagine_per_goal.values()) < 1 or min(self.oracle_episodes.values()) < 1:
            raise ReproduceError("imagine_per_goal and oracle_episodes must be at least 1 "
                                 "per suite")
        if self.llm_context < 0:
            raise ReproduceError("llm_context must be 0 or more")
        try:
            self.algo = canonical_algo(self.algo)
            if self.algos:
                self.algos = list(dict.fromkeys(canonical_algo(a) for a in self.algos))
                self.algo = self.algos[0]
            for a in self.algos or [self.algo]:
                check_algo_for(a, environment)
            self.algo_steps = {canonical_algo(a): n for a, n in self.algo_steps.items()}
            if self.embedder != "grounded":
                from kalm.rl.embed import check_embedder_name

                check_embedder_name(self.embedder)
            if not parse_filter(self.filter):
                raise ReproduceError("--filter must name at least one check for kalm_filtered "
                                     "(kalm already keeps every rollout)")
        except ValueError as e:
            raise ReproduceError(str(e)) from None
        if "cycle" in self.filter.split(",") and not self.explain:
            self.explain = True  # the cycle check needs the LM's explanations
        if self.grounded and not Path(self.grounded).exists():
            raise ReproduceError(f"--grounded {self.grounded} not found; pass a grounded model "
                                 "folder (a `ground` run or assets/grounded/clevr)")
        return self

    def algo_list(self) -> list[str]:
        """The algorithms trained for every method: ``algos``, or ``[algo]``."""
        return list(self.algos) or [self.algo]

    def steps_of(self, algo: str | None = None) -> int:
        """Gradient steps of ``algo``'s policies (default: the main algorithm's)."""
        return self.algo_steps.get(algo or self.algo_list()[0], self.steps)


def imagined_volume(cfg: ReproduceConfig, environment=None) -> dict[str, int]:
    """Imagined rollouts per novel suite: the goals imagined (``imagine_goals`` spread over the
    suite drawn with the evaluation seed; 0 or more than it has = all) x ``imagine_per_goal``."""
    if environment is None:
        from kalm.envs import get_env

        environment = get_env(cfg.env)
    out = {}
    for suite in NOVEL:
        n_items = len(environment.suite_items(suite, cfg.eval_seed))
        n = cfg.imagine_goals[suite]
        goals = n_items if n <= 0 or n >= n_items else len(_spread(list(range(n_items)), n))
        out[suite] = goals * cfg.imagine_per_goal[suite]
    return out


def policy_key(cfg: ReproduceConfig, method: str, algo: str, seed: int | None = None) -> str:
    """The id of a method's policy (its train folder and evaluation): ``METHOD-sSEED`` with one
    algorithm (CLEVR's runs), ``METHOD-ALGO-sSEED`` with several; without ``seed``: the results
    key (``METHOD`` or ``METHOD-ALGO``)."""
    base = method if len(cfg.algo_list()) == 1 else f"{method}-{algo}"
    return base if seed is None else f"{base}-s{seed}"


# The imagined-data volume (``--volume``): ``preset`` keeps a preset's imagine_goals and
# imagine_per_goal; ``paper`` sets the paper's rollouts per suite (CLEVR: 5,600 rephrase =
# 400 goals x 14, 72,400 easy = 100 x 724, 1,680 hard = 105 of the 110 goals x 16), for a bigger
# machine: ~40x the cpu preset's imagination (~14 h there) and as many oracle episodes.
VOLUMES = ("preset", "paper")
PAPER_VOLUME: dict[str, dict[str, Any]] = {
    "clevr": {"imagine_goals": {"rephrase": 400, "easy": 100, "hard": 105},
              "imagine_per_goal": {"rephrase": 14, "easy": 724, "hard": 16}},
}

PRESETS: dict[str, dict[str, Any]] = {
    # The 2-core CPU machine (measured with the shipped grounded model while another job held
    # one core): collect ~7 min, grounding ~1 h (skipped with --grounded), imagination 21 min,
    # oracle data 8 min, ~2.2 min per policy, evaluation ~20 s per policy checkpoint plus the
    # LLM policy (~0.4 s a step: ~15-20 min for 20 episodes per category). Every method is
    # trained with DiscreteBC and DiscreteCQL (weight 10, TrainConfig.cql_alpha): 24 policies
    # over 3 seeds, each scored as the mean of its last 5 checkpoints (5 evaluations).
    # Imagined volume (the default --volume preset): 400 rephrase (400 goals x 1), 2,000 easy
    # (100 x 20), 110 hard (110 x 1) rollouts; --volume paper: the paper's 5,600 / 72,400 /
    # 1,680. The oracle gets as many expert episodes per suite (parity).
    # Goal conditioning: the grounded LM's own reading of the goal text (``grounded``: lm:DIR
    # of the run's grounded model); a linear probe reads (source, destination, direction) of
    # unseen phrasings from it 68.8% of the time against MiniLM's 27.5% (bench/goal_probe.py).
    # --embedder minilm keeps the paper's frozen sentence encoder.
    # The Decision Transformer baseline (real data only): 5,000 steps of 64 windows of 5 steps
    # per seed (DT_ARGS).
    # Since session 22 (the settings that reach issue 15's targets, runs/rep21r): 4 imagined
    # rollouts per rephrase and per hard goal (1,600 and 440; the oracle as many), goal-guided
    # decoding (imagine --guide 40) and every policy trained with --augment 8 (CLEVR's colour
    # symmetries) and --mentions 5 (which ball each colour word of the goal names). With
    # --jobs 2 (the default here) units run two at a time on one thread each.
    # Since session 23: BC policies train 20,000 steps (session 22's seed-0 check: KALM 74.3 /
    # real only 44.3 / oracle 81.6% novel, against 70.5 / 44.0 / 74.8 at 10,000); DiscreteCQL
    # keeps 10,000 (~8 min a policy on one thread at 10,000).
    "cpu": {"algos": ["discrete_bc", "discrete_cql"], "embedder": "grounded", "dt_steps": 5000,
            "steps": 20000, "algo_steps": {"discrete_cql": 10000},
            "imagine_per_goal": {"rephrase": 4, "easy": 20, "hard": 4}, "imagine_guide": 40,
            "train_args": ["--augment", "8", "--mentions", "5"]},
    # Seconds to a minute: tiny sizes, for tests and smoke runs. It needs a grounded model
    # (--grounded) or a small base LM for the ground stage (--lm DIR, e.g. a tiny test model).
    "tiny": {
        "seeds": [0], "real_episodes": 24, "ground_preset": "tiny",
        "ground_args": ["--steps", "4", "--eval-every", "2", "--save-every", "2"],
        "imagine_goals": {"rephrase": 2, "easy": 2, "hard": 1},
        "imagine_per_goal": {"rephrase": 1, "easy": 2, "hard": 1},
        "imagine_batch": 4, "imagine_max_steps": 3,
        "algos": ["discrete_bc", "discrete_cql"],
        "steps": 40, "steps_per_epoch": 8, "embedder": "hash:64", "filter": "finite",
        "dt_steps": 16,
        "train_args": ["--batch-size", "32"],
        "episodes": 2, "llm_episodes": 1,
    },
}


# Other environments' sizes, laid over PRESETS[preset] (the keys they set replace CLEVR's).
ENV_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "metaworld": {
        # The 2-core CPU machine with --grounded assets/grounded/metaworld, measured while
        # another job held most of both cores (runs/reproduce-metaworld*): collect 1,000 expert
        # episodes ~2 min (the settings of the grounding data, assets/data/metaworld1k.npz: a
        # copy of it at OUT/data/real.npz is found and reused), imagination 184 rollouts
        # ~28 min (3-10 s a rollout under that load; ~1-2 s unloaded), oracle data 46 s,
        # 3,000 steps at batch 256 ~25 s per BC policy and ~85 s per TD3+BC one (8 policies:
        # ~8 min), evaluation ~35-40 s per policy at 30 episodes per category, the LLM as policy
        # ~0.2-0.7 s a step plus ~45 s to start (~4-5 min per episode per category).
        "cpu": {
            "seeds": [0], "real_episodes": 1000, "real_seed": 0, "real_noise": 0.1,
            "expert": "scripted",
            "imagine_goals": {"rephrase": 20, "easy": 48, "hard": 24},
            "imagine_per_goal": {"rephrase": 2, "easy": 2, "hard": 2},
            "oracle_episodes": {"rephrase": 100, "easy": 200, "hard": 100},
            "algo": "bc", "algos": ["bc", "td3_plus_bc"], "steps": 3000, "steps_per_epoch": 1000,
            "algo_steps": {}, "filter": "match", "episodes": 30, "llm_episodes": 2, "llm_context": 10,
            "embedder": "minilm",
            # greedy, as published: goal-guided decoding with continuous actions (--imagine-guide
            # K) changed neither match nor replay on 52 bench goals in session 24 (see
            # assets/grounded/metaworld/README.md); CLEVR's --augment / --mentions do not apply
            "imagine_guide": 0, "train_args": [],
            # no Decision Transformer baseline yet: its CLEVR settings (DT_ARGS: windows of 5
            # steps) do not fit 100-200-step episodes, and none was measured here (--dt-steps N
            # trains one; the tiny preset tests the continuous one)
            "dt_steps": 0,
        },
        "tiny": {
            "real_episodes": 4, "real_seed": 0, "real_noise": 0.1, "expert": "scripted",
            "imagine_goals": {"rephrase": 1, "easy": 1, "hard": 1},
            "imagine_per_goal": {"rephrase": 1, "easy": 1, "hard": 1},
            "oracle_episodes": {"rephrase": 1, "easy": 2, "hard": 1},
            "algo": "bc", "algos": ["bc", "td3_plus_bc"], "steps": 20, "steps_per_epoch": 10,
            "episodes": 1, "llm_episodes": 1, "llm_context": 4,
        },
    },
}


def make_config(preset: str, **overrides: Any) -> ReproduceConfig:
    """The config of ``preset`` (for ``overrides["env"]``, default CLEVR) with ``overrides``
    (None values are ignored), validated."""
    if preset not in PRESETS:
        raise ReproduceError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    env = overrides.get("env") or "clevr"
    values = {"preset": preset, **copy.deepcopy(PRESETS[preset]),
              **copy.deepcopy(ENV_PRESETS.get(env, {}).get(preset, {}))}
    volume = overrides.get("volume") or "preset"
    if volume == "paper":
        if env not in PAPER_VOLUME:
            raise ReproduceError(f"--volume paper: the paper gives no imagined-data volume for "
                                 f"{env}; use --volume preset")
        values.update(copy.deepcopy(PAPER_VOLUME[env]))
    names = {f.name for f in fields(ReproduceConfig)}
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in names:
            raise ReproduceError(f"unknown setting {k!r}")
        if k in ("imagine_per_goal", "algo_steps"):  # those given; the others keep the preset's
            base = values.get(k)
            if base is None:
                base = next(f for f in fields(ReproduceConfig) if f.name == k).default_factory()
            v = {**base, **v}
        values[k] = v
    if overrides.get("algo") is not None and overrides.get("algos") is None:
        values["algos"] = []  # --algo alone: that one algorithm, not the preset's list
    if overrides.get("steps") is not None and overrides.get("algo_steps") is None:
        values["algo_steps"] = {}  # --steps alone: every policy's steps
    cfg = ReproduceConfig(**values).validate()
    if preset == "tiny" and not (cfg.grounded or cfg.lm):
        raise ReproduceError("--preset tiny needs --grounded DIR (a grounded model) or --lm DIR "
                             "(a small local base LM to ground): the packaged LMs take an hour")
    return cfg


# ------------------------------------------------------------------------------------------------
# Stage bookkeeping
# ------------------------------------------------------------------------------------------------


class _Book:
    """``OUT/stages.json``: per stage its state, settings, wall time and units."""

    def __init__(self, out: Path) -> None:
        self.path = out / "stages.json"
        self.data: dict[str, Any] = {}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                raise ReproduceError(f"{self.path} is unreadable; remove it (the stages' own "
                                     "outputs are reused: rerunning resumes them)") from None
        self.data.setdefault("stages", {})

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"state": "pending", "wall_s": 0.0,
                                                     "units": {}})

    def check_settings(self, name: str, settings: dict, redo_on_change: bool = False) -> None:
        st = self.stage(name)
        old = st.get("settings")
        if old is not None and old != settings:
            changed = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
            if not redo_on_change:
                what = "; ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in changed[:3])
                raise ReproduceError(
                    f"the {name} stage in {self.path.parent} was made with other settings "
                    f"({what}); rerun with the same options, or use another --out")
            st.update({"state": "pending", "units": {}, "wall_s": 0.0})
        st["settings"] = settings
        self.save()


@contextlib.contextmanager
def _logged(log: Path):
    """Send stdout and stderr of a unit's command to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def _run_cli(argv: list[str], log: Path) -> None:
    """Run ``python -m kalm ARGV`` in this process (its errors raise); output goes to ``log``."""
    from kalm.commands import CLIError, build_parser
    from kalm.data.collect import CollectError

    args = build_parser().parse_args(argv)
    with _logged(log):
        print(f"$ python -m kalm {shlex.join(argv)}", flush=True)
        try:
            args.func(args)
        except (CLIError, CollectError) as e:
            raise ReproduceError(f"`python -m kalm {shlex.join(argv)}` failed: {e} "
                                 f"(log: {log})") from None


def _moved(argv: list[str], key: str) -> list[str]:
    """A unit's recorded ``argv`` with its run folder (the ``--out`` value's ``.../train/KEY``
    parent) written as ``OUT``: a run copied or moved to another folder keeps its units."""
    try:
        out = Path(argv[argv.index("--out") + 1])
    except (ValueError, IndexError):
        return list(argv)
    if out.parts[-2:] != ("train", key):
        return list(argv)
    root = str(out.parent.parent)
    return [a.replace(root, "OUT", 1) if a == root or a.startswith(root + "/") else a
            for a in argv]


def _dataset_made_with(path: Path, config: dict) -> bool:
    """Whether the dataset at ``path`` was collected with ``config``'s episode settings."""
    from kalm.data.episodes import load_dataset

    try:
        meta = load_dataset(path).meta.get("config", {})
    except Exception:
        return False
    return all(meta.get(k) == v for k, v in config.items())


def _spread(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items`` (all of them when n is 0 or too big)."""
    if n <= 0 or n >= len(items):
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def _load_policy(spec: str, embedders: dict[str, Any], env_name: str, seed: int,
                 llm_context: int = 0):
    """The policy of an evaluation spec (a train run or snapshot folder, ``random``, ``llm:DIR``,
    ``expert``); trained policies share ``embedders`` by name."""
    from kalm.policy import make_policy

    if spec.startswith("llm:") and llm_context:
        from kalm.policy.llm import LLMPolicy

        return LLMPolicy(spec[len("llm:"):], context=llm_context)
    if spec.startswith(("llm:", "random", "expert")):
        return make_policy(spec, seed=seed, env=env_name)
    from kalm.rl.embed import make_embedder
    from kalm.rl.policy import TrainedPolicy, policy_dir

    meta = json.loads((policy_dir(spec) / "policy.json").read_text())
    name = meta["embedder"]
    if name not in embedders:
        embedders[name] = make_embedder(name)
    return TrainedPolicy.load(spec, embedder=embedders[name])


def _evaluate_checkpoints(env_name: str, specs: list[str], episodes: int, seed: int,
                          llm_context: int, log: Path, embedders: dict[str, Any]) -> list[dict]:
    """``evaluate`` of each spec on every category's goal items (``episodes`` per category, the
    evaluation ``seed``), as dicts; output goes to ``log``."""
    from kalm.envs import get_env
    from kalm.evaluate import evaluate

    env = get_env(env_name)
    items = [it for s in CATEGORIES for it in env.suite_items(s, seed)]
    out = []
    with _logged(log):
        for spec in specs:
            policy = _load_policy(spec, embedders, env_name, seed, llm_context)
            out.append(evaluate(policy, items, episodes=episodes, seed=seed, env=env).to_dict())
    return out


# ------------------------------------------------------------------------------------------------
# Parallel units (``--jobs N``)
# ------------------------------------------------------------------------------------------------


def auto_jobs(cores: int | None = None) -> int:
    """``--jobs 0``: two worker processes where there are 2 cores or more (measured on the 2-core
    machine: two 1-thread trainings take the time of one 2-thread training, and two 1-thread
    imaginations 1.4x the throughput of one 2-thread one), else 1 (inline)."""
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def _limit_threads(threads: int) -> None:
    """Keep a worker process to ``threads`` CPU threads (the variables are set before torch is
    imported; torch is told too)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _worker_cli(argv: list[str], log: str, threads: int) -> None:
    """A unit's ``python -m kalm ARGV`` in a worker process."""
    _limit_threads(threads)
    _run_cli(argv, Path(log))


def _worker_evaluate(env_name: str, specs: list[str], episodes: int, seed: int,
                     llm_context: int, log: str, threads: int) -> list[dict]:
    """One policy's evaluations (a checkpoint each) in a worker process."""
    _limit_threads(threads)
    return _evaluate_checkpoints(env_name, specs, episodes, seed, llm_context, Path(log), {})


class _Units:
    """The pipeline's units on ``jobs`` worker processes (fresh ones, ``cores // jobs`` threads
    each): a unit starts, in the order the stages added them, once the stages it needs are done
    and a worker is free, so independent work overlaps (imagination beside the oracle data and
    the real-data policies). A failed unit stops new ones; the error is raised when the running
    ones have ended."""

    def __init__(self, jobs: int, lock: threading.RLock) -> None:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing

        self.jobs = jobs
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.cv = threading.Condition(lock)
        self.pool = ProcessPoolExecutor(max_workers=jobs,
                                        mp_context=multiprocessing.get_context("spawn"),
                                        max_tasks_per_child=1)
        self.queue: list[tuple[frozenset, Callable[[], None]]] = []
        self.left: dict[str, int] = {}        # stage -> its units not ended yet
        self.closing: dict[str, Callable[[], None]] = {}  # stage -> its finish, once all added
        self.complete: set[str] = set()    # stages done, and units ("STAGE/KEY") ended well
        self.added: set[str] = set()
        self.running = 0
        self.workers: list[threading.Thread] = []
        self.error: BaseException | None = None
        self.interrupted = False
        self.stopping = False  # stop() began: a unit that cannot start any more is interrupted

    def known(self, name: str) -> bool:
        """Whether the stage or unit (``STAGE/KEY``) ``name`` was added in this sitting."""
        with self.cv:
            return name in self.left or name in self.added or name in self.complete

    def add(self, stage: str, needs: tuple[str, ...], run: Callable[[], None],
            key: str | None = None) -> None:
        """Queue a unit of ``stage``; it starts once every stage or unit (``STAGE/KEY``) in
        ``needs`` is done; ``key`` names it for the units that need it."""
        name = f"{stage}/{key}" if key is not None else None
        with self.cv:
            self.left[stage] = self.left.get(stage, 0) + 1
            if name:
                self.added.add(name)
            self.queue.append((frozenset(needs), lambda: self._run(stage, run, name)))
            self._pump()

    def close(self, stage: str, finish: Callable[[], None]) -> None:
        """Every unit of ``stage`` is added; ``finish`` runs when they have all ended."""
        with self.cv:
            self.left.setdefault(stage, 0)
            self.closing[stage] = finish
            self._pump()

    def call(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args, threads)`` in a worker process (blocks this unit's thread)."""
        return self.pool.submit(fn, *args, self.threads).result()

    def _run(self, stage: str, run: Callable[[], None], name: str | None = None) -> None:
        try:
            run()
        except BaseException as e:  # recorded by the unit; the first one is raised by wait()
            with self.cv:
                self.error = self.error or e
        else:
            if name:
                with self.cv:
                    self.complete.add(name)
        finally:
            with self.cv:
                self.running -= 1
                self.left[stage] -= 1
                self._pump()
                self.cv.notify_all()

    def _pump(self) -> None:
        """Finish complete stages, then start ready units while workers are free (lock held)."""
        if self.error is None:
            for stage in [s for s, f in self.closing.items() if self.left.get(s) == 0]:
                self.closing.pop(stage)()
                self.complete.add(stage)
        while self.error is None and self.running < self.jobs:
            ready = next((i for i, (needs, _) in enumerate(self.queue)
                          if needs <= self.complete), None)
            if ready is None:
                break
            _, start = self.queue.pop(ready)
            self.running += 1
            t = threading.Thread(target=start, daemon=True)
            self.workers.append(t)
            t.start()
        self.cv.notify_all()

    def wait(self, stage: str | None = None) -> None:
        """Until ``stage`` is complete (None: every unit added has ended); raises a unit's
        error."""
        with self.cv:
            while True:
                if self.error is not None:
                    while self.running:
                        self.cv.wait()
                    raise self.error
                if stage is None and not self.queue and not self.running and not self.closing:
                    return
                if stage is not None and stage in self.complete:
                    return
                if stage is not None and stage not in self.left:
                    raise ReproduceError(f"the {stage} stage was not started")
                if not self.running and not any(n <= self.complete for n, _ in self.queue):
                    stuck = sorted(set().union(*(n for n, _ in self.queue)) - self.complete)
                    raise ReproduceError("units wait for stages that will not finish: "
                                         + ", ".join(stuck))
                self.cv.wait(timeout=1.0)

    def stop(self, interrupted: bool) -> None:
        """End the workers (an interruption kills the running ones: they resume on a rerun)."""
        with self.cv:
            self.stopping = True
            self.interrupted = self.interrupted or interrupted
            if interrupted:
                self.error = self.error or KeyboardInterrupt()
            self.queue.clear()
        if interrupted:
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    proc.terminate()
        self.pool.shutdown(wait=not interrupted, cancel_futures=True)
        for t in self.workers:
            t.join(timeout=30)


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


class _Pipeline:
    def __init__(self, cfg: ReproduceConfig, out: Path, say: Callable[[str], None]) -> None:
        from kalm.envs import get_env

        self.cfg, self.out, self.say = cfg, out, say
        self.env = get_env(cfg.env)
        self.book = _Book(out)
        self.lock = threading.RLock()
        self.sched: _Units | None = None
        self.real = out / "data" / "real.npz"
        self.logs = out / "logs"

    # -- helpers ------------------------------------------------------------------------------

    def cli(self, argv: list[str], log: Path) -> None:
        """``_run_cli`` in this run's environment (``--env`` added unless CLEVR's default): in
        this process, or in a worker process with ``--jobs`` above 1."""
        if self.env.name != "clevr":
            argv = [*argv, "--env", self.env.name]
        if self.sched is None:
            _run_cli(argv, log)
        else:
            self.sched.call(_worker_cli, argv, str(log))

    def settings(self, settings: dict) -> dict:
        """A stage's settings, with the environment when it is not CLEVR (CLEVR runs' records
        stay as they were)."""
        return settings if self.env.name == "clevr" else {**settings, "env": self.env.name}

    def model_dir(self) -> str:
        if self.cfg.grounded:
            return self.cfg.grounded
        return str(self.out / "ground")

    def embedder_name(self) -> str:
        """The policies' goal embedder: ``grounded`` = the run's grounded LM (``lm:DIR``)."""
        if self.cfg.embedder == "grounded":
            return f"lm:{self.model_dir()}"
        return self.cfg.embedder

    def require(self, *names: str) -> None:
        for n in names:
            if self.sched is not None and self.sched.known(n):
                continue  # queued in this sitting: the units that need it wait for it
            if self.book.stage(n).get("state") != "done":
                raise ReproduceError(f"the {n} stage has not finished in {self.out}; run it first "
                                     f"(--stages {n}, or no --stages)")

    def unit(self, stage: str, key: str, work: Callable[[], dict | None],
             needs: tuple[str, ...] = ()) -> None:
        """Run one unit of ``stage`` unless done; record its state and wall time. With
        ``--jobs`` above 1 it is queued instead, to start once the stages it ``needs`` (those
        running in this sitting) are done."""
        with self.lock:
            st = self.book.stage(stage)
            u = st["units"].setdefault(key, {"state": "pending", "wall_s": 0.0})
            if u["state"] == "done":
                self.say(f"[{stage}] {key}: done before ({u['wall_s']:.0f} s), reused")
                return
        if self.sched is None:
            self._run_unit(stage, key, work)
        else:
            needs = tuple(n for n in needs if self.sched.known(n))
            self.sched.add(stage, needs, lambda: self._run_unit(stage, key, work), key=key)

    def _run_unit(self, stage: str, key: str, work: Callable[[], dict | None]) -> None:
        with self.lock:
            st = self.book.stage(stage)
            u = st["units"][key]
            self.say(f"[{stage}] {key}: running")
            u["state"] = "running"
            st["state"], st["reused"] = "running", False
            self.book.save()
        t0 = time.time()
        try:
            extra = work() or {}
        except BaseException as e:
            with self.lock:
                u["wall_s"] = round(u["wall_s"] + time.time() - t0, 1)
                st["wall_s"] = round(st["wall_s"] + time.time() - t0, 1)
                stopped = isinstance(e, KeyboardInterrupt) or (
                    self.sched is not None and (self.sched.interrupted or self.sched.stopping))
                u["state"] = "interrupted" if stopped else "failed"
                u["error"] = f"{type(e).__name__}: {e}"
                st["state"] = u["state"]
                self.book.save()
            raise
        dt = time.time() - t0
        with self.lock:
            u.update({"state": "done", "wall_s": round(u["wall_s"] + dt, 1), **extra})
            u.pop("error", None)
            st["wall_s"] = round(st["wall_s"] + dt, 1)
            self.book.save()
        self.say(f"[{stage}] {key}: {extra.get('outcome', 'done')} in {dt:.0f} s")

    def finish(self, stage: str, **extra: Any) -> None:
        """Mark ``stage`` done (with ``--jobs`` above 1: once its queued units have ended)."""
        def done() -> None:
            with self.lock:
                st = self.book.stage(stage)
                st.update({"state": "done", **extra})
                st["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                self.book.save()

        if self.sched is None:
            done()
        else:
            self.sched.close(stage, done)

    def wait_for(self, stage: str) -> None:
        """With ``--jobs`` above 1: until ``stage``'s units queued in this sitting have ended."""
        if self.sched is not None and self.sched.known(stage):
            self.sched.wait(stage)

    def begin(self, stage: str, settings: dict, redo_on_change: bool = False) -> bool:
        """Check ``settings`` against the record; True when the whole stage is to be reused."""
        with self.lock:
            self.book.check_settings(stage, settings, redo_on_change)
            st = self.book.stage(stage)
            st["reused"] = st.get("state") == "done"
            self.book.save()
            return st["reused"]

    # -- stages -------------------------------------------------------------------------------

    def collect(self) -> None:
        c = self.cfg
        settings = self.settings({"episodes": c.real_episodes, "seed": c.real_seed,
                                  "noise": c.real_noise, "expert": c.expert})
        reuse = self.begin("collect", settings) and self.real.exists()

        def work() -> dict:
            meta = {"seed": c.real_seed, "suite": None, "noise": float(c.real_noise),
                    "expert": c.expert, "episodes": c.real_episodes}
            if self.real.exists() and _dataset_made_with(self.real, meta):
                return {"outcome": "found"}
            self.cli(["collect", "--episodes", str(c.real_episodes), "--seed", str(c.real_seed),
                      "--expert", c.expert, "--noise", str(c.real_noise), "--out", str(self.real),
                      "--quiet"], self.logs / "collect.log")
            return {}

        if not reuse:
            self.unit("collect", "real", work)
        self.finish("collect", outputs=[str(self.real)])

    def ground(self) -> None:
        c = self.cfg
        if c.grounded:
            settings = {"grounded": str(c.grounded)}
        else:
            settings = self.settings({"preset": c.ground_preset, "lm": c.lm,
                                      "args": list(c.ground_args),
                                      "data": self.book.stage("collect").get("settings")})
        reuse = self.begin("ground", settings)
        if c.grounded:
            st = self.book.stage("ground")
            st["units"] = {"grounded": {"state": "reused", "wall_s": 0.0, "model": c.grounded}}
            self.finish("ground", outputs=[c.grounded], reused=True,
                        note=f"--grounded {c.grounded}: not grounded here")
            self.say(f"[ground] using the grounded model {c.grounded}")
            return
        self.require("collect")

        def work() -> None:
            argv = ["ground", "--data", str(self.real), "--out", str(self.out / "ground"),
                    "--preset", c.ground_preset, "--quiet"]
            if c.lm:
                argv += ["--model", c.lm]
            self.cli(argv + list(c.ground_args), self.logs / "ground.log")

        if not reuse:
            self.unit("ground", "model", work, needs=("collect",))
        self.finish("ground", outputs=[str(self.out / "ground" / "model")])

    def goals_file(self, suite: str) -> Path:
        """The evaluation's goal items of ``suite`` (spread subset for imagination)."""
        from kalm.envs.base import write_goal_items

        path = self.out / "goals" / f"{suite}.jsonl"
        items = _spread(self.env.suite_items(suite, self.cfg.eval_seed),
                        self.cfg.imagine_goals[suite])
        write_goal_items(path, items)
        return path

    def imagine(self) -> None:
        c = self.cfg
        settings = {"model": self.model_dir(), "seed": c.imagine_seed, "goals_seed": c.eval_seed,
                    "goals": c.imagine_goals, "per_goal": c.imagine_per_goal,
                    "batch": c.imagine_batch, "max_steps": c.imagine_max_steps,
                    "explain": c.explain, "ground": self.book.stage("ground").get("settings")}
        if c.imagine_guide:  # runs made before the option keep their settings
            settings["guide"] = c.imagine_guide
        if c.imagine_guide_horizon > 1:
            settings["guide_horizon"] = c.imagine_guide_horizon
        if c.imagine_guide_obstacles:
            settings["guide_obstacles"] = True
        if c.imagine_settle:
            settings["settle"] = c.imagine_settle
        self.begin("imagine", self.settings(settings))
        self.require("ground")
        for suite in NOVEL:
            def work(suite=suite) -> dict:
                out = self.out / "imagine" / suite
                argv = ["imagine", "--model", self.model_dir(), "--goals",
                        str(self.goals_file(suite)), "--per-goal", str(c.imagine_per_goal[suite]),
                        "--seed", str(c.imagine_seed), "--out", str(out),
                        "--batch-size", str(c.imagine_batch), "--quiet"]
                if c.imagine_max_steps:
                    argv += ["--max-steps", str(c.imagine_max_steps)]
                if c.imagine_guide:
                    argv += ["--guide", str(c.imagine_guide)]
                if c.imagine_guide_horizon > 1:
                    argv += ["--guide-horizon", str(c.imagine_guide_horizon)]
                if c.imagine_guide_obstacles:
                    argv.append("--guide-obstacles")
                if c.imagine_settle:
                    argv += ["--settle", str(c.imagine_settle)]
                if not c.explain:
                    argv.append("--no-explain")
                self.cli(argv, self.logs / f"imagine-{suite}.log")
                summary = json.loads((out / "summary.json").read_text())
                return {"rollouts": summary["overall"]["rollouts"]}

            self.unit("imagine", suite, work, needs=("ground",))
        self.finish("imagine", outputs=[str(self.out / "imagine" / s) for s in NOVEL])

    def oracle(self) -> None:
        c = self.cfg
        settings = {"episodes": c.oracle_episodes, "seed": c.eval_seed, "noise": c.real_noise,
                    "expert": c.expert}
        self.begin("oracle", self.settings(settings))
        for suite in NOVEL:
            path = self.out / "oracle" / f"{suite}.npz"

            def work(suite=suite, path=path) -> dict:
                n = c.oracle_episodes[suite]
                meta = {"seed": c.eval_seed, "suite": suite, "noise": float(c.real_noise),
                        "expert": c.expert, "episodes": n}
                if path.exists() and _dataset_made_with(path, meta):
                    return {"outcome": "found"}
                # The suite drawn with the evaluation seed: the goals evaluated (and imagined);
                # collect derives its reset seeds from another stream than the evaluation's.
                self.cli(["collect", "--suite", suite, "--episodes", str(n),
                          "--seed", str(c.eval_seed), "--expert", c.expert,
                          "--noise", str(c.real_noise), "--out", str(path), "--quiet"],
                         self.logs / f"oracle-{suite}.log")
                return {}

            self.unit("oracle", suite, work)
        self.finish("oracle", outputs=[str(self.out / "oracle" / f"{s}.npz") for s in NOVEL])

    def train_argv(self, method: str, seed: int, algo: str | None = None) -> list[str]:
        c = self.cfg
        algo = algo or c.algo
        argv = ["train", "--algo", algo, "--real", str(self.real),
                "--out", str(self.out / "train" / policy_key(c, method, algo, seed)),
                "--steps", str(c.steps_of(algo)),
                "--steps-per-epoch", str(c.steps_per_epoch), "--seed", str(seed),
                "--embedder", self.embedder_name(), "--quiet"]
        if method in ("kalm", "kalm_filtered"):
            argv += ["--imagined", *[str(self.out / "imagine" / s) for s in NOVEL],
                     "--imagined-ratio", str(c.imagined_ratio),
                     "--filter", "none" if method == "kalm" else c.filter]
        elif method == "oracle":
            argv += ["--imagined", *[str(self.out / "oracle" / f"{s}.npz") for s in NOVEL],
                     "--imagined-ratio", str(c.imagined_ratio), "--filter", "none"]
        return argv + list(c.train_args)

    def train(self) -> None:
        c = self.cfg
        settings = {"algo": c.algo, "steps": c.steps, "steps_per_epoch": c.steps_per_epoch,
                    "embedder": self.embedder_name(), "imagined_ratio": c.imagined_ratio,
                    "filter": c.filter, "train_args": list(c.train_args),
                    "upstream": {s: self.book.stage(s).get("settings")
                                 for s in ("collect", "imagine", "oracle")}}
        if c.algos:
            settings["algos"] = list(c.algos)
        if c.algo_steps:
            settings["algo_steps"] = dict(c.algo_steps)
        settings = self.settings(settings)
        self.grow_algos(settings)
        self.begin("train", settings)
        self.require("collect", "imagine", "oracle")
        # one unit per seed, algorithm and method (CLEVR's order with one algorithm)
        for seed, algo, method in ((s, a, m) for s in c.seeds for a in c.algo_list()
                                   for m in METHODS):
            key = policy_key(c, method, algo, seed)

            def work(method=method, seed=seed, algo=algo, key=key) -> dict:
                log = self.logs / f"train-{key}.log"
                try:
                    self.cli(self.train_argv(method, seed, algo), log)
                except ValueError as e:
                    if method == "kalm_filtered" and "no imagined rollout is left" in str(e):
                        # nothing passes the filter: no policy; the results say so
                        return {"outcome": "skipped", "reason": str(e)}
                    raise
                data = json.loads((self.out / "train" / key / "data.json").read_text())
                return {"real_transitions": data["real"]["transitions"],
                        "imagined_transitions": data["imagined_transitions"]}

            needs = {"kalm": ("imagine",), "kalm_filtered": ("imagine",),
                     "oracle": ("oracle",)}.get(method, ())
            self.unit("train", key, work, needs=("collect", *needs))
        for seed in c.seeds if c.dt_steps else []:
            self.train_dt(seed)
        self.finish("train", outputs=[str(self.out / "train")])

    def grow_algos(self, settings: dict) -> None:
        """A run trained with one algorithm, rerun with more (that one first, every other setting
        the same): its policies and their evaluations take the several-algorithm names
        (``METHOD-sS`` -> ``METHOD-ALGO-sS``: units, folders, evaluation files and logs), so they
        are reused and only the new algorithms' policies are trained."""
        c = self.cfg
        with self.lock:
            st = self.book.stage("train")
            old = st.get("settings")
            if not old or len(c.algo_list()) < 2:
                return
            old_algos = old.get("algos") or [old.get("algo")]
            if old_algos != c.algo_list()[:1] or old.get("algo") != settings.get("algo"):
                return
            same = ({k: v for k, v in old.items() if k != "algos"}
                    == {k: v for k, v in settings.items() if k != "algos"})
            if not same:
                return  # another setting changed too: begin() refuses it as before
            first = c.algo_list()[0]
            renamed = {}
            for method in METHODS:
                for key in [k for k in st["units"] if k.startswith(f"{method}-s")
                            and k[len(method) + 2:].isdigit()]:
                    renamed[key] = f"{method}-{first}-s{key[len(method) + 2:]}"
            for old_key, new_key in renamed.items():
                src, dst = self.out / "train" / old_key, self.out / "train" / new_key
                if src.exists() and not dst.exists():
                    src.rename(dst)
                for name in ("train-{}.log", "evaluate-{}.log"):
                    log = self.logs / name.format(old_key)
                    if log.exists() and not (self.logs / name.format(new_key)).exists():
                        log.rename(self.logs / name.format(new_key))
                self._rename_evaluation(old_key, new_key)
            st["units"] = {renamed.get(k, k): v for k, v in st["units"].items()}
            ev = self.book.stage("evaluate")
            ev["units"] = {renamed.get(k, k): v for k, v in ev.get("units", {}).items()}
            st["settings"] = dict(old, algos=list(c.algo_list()))
            self.book.save()
        if renamed:
            self.say(f"[train] {len(renamed)} {first} policies of the one-algorithm run renamed "
                     f"METHOD-{first}-sSEED and reused; adding "
                     + ", ".join(c.algo_list()[1:]))

    def _rename_evaluation(self, old_key: str, new_key: str) -> None:
        """``OUT/eval/OLD.json`` and ``OUT/eval/OLD/`` (per-checkpoint files) as NEW, their
        policy ids and specs rewritten."""
        ev = self.out / "eval"
        old_train, new_train = str(self.out / "train" / old_key), str(self.out / "train" / new_key)

        def rewrite(path: Path, dest: Path) -> None:
            d = json.loads(path.read_text())
            d["policy_id"] = new_key
            for entry in (d, *d.get("checkpoints", [])):
                if isinstance(entry.get("spec"), str):
                    entry["spec"] = entry["spec"].replace(old_train, new_train, 1)
            write_json_atomic(dest, d)
            if dest != path:
                path.unlink()

        if (ev / old_key).is_dir() and not (ev / new_key).exists():
            (ev / old_key).rename(ev / new_key)
            for f in (ev / new_key).glob("step-*.json"):
                rewrite(f, f)
        if (ev / f"{old_key}.json").is_file() and not (ev / f"{new_key}.json").exists():
            rewrite(ev / f"{old_key}.json", ev / f"{new_key}.json")

    def dt_argv(self, seed: int) -> list[str]:
        """The Decision Transformer baseline's `train` command: the real data alone."""
        c = self.cfg
        return ["train", "--algo", _dt_algo(self.env), "--real", str(self.real),
                "--out", str(self.out / "train" / f"dt-s{seed}"), "--steps", str(c.dt_steps),
                "--steps-per-epoch", str(max(1, c.dt_steps // 10)), "--seed", str(seed),
                "--embedder", self.embedder_name(), "--quiet", *c.dt_args]

    def train_dt(self, seed: int) -> None:
        key = f"dt-s{seed}"
        argv = self.dt_argv(seed)
        u = self.book.stage("train")["units"].get(key, {})
        if u.get("state") == "done" and u.get("argv") is not None \
                and _moved(u["argv"], key) != _moved(argv, key):
            raise ReproduceError(f"the Decision Transformer {key} in {self.out} was trained with "
                                 f"other options ({shlex.join(u['argv'])}); rerun with the same "
                                 "options, or use another --out")

        def work() -> dict:
            self.cli(argv, self.logs / f"train-{key}.log")
            data = json.loads((self.out / "train" / key / "data.json").read_text())
            return {"real_transitions": data["real"]["transitions"], "imagined_transitions": 0,
                    "argv": argv}

        self.unit("train", key, work, needs=("collect",))

    def policies(self) -> list[tuple[str, str, int]]:
        """(policy id, policy spec, episodes per category) of every policy to evaluate: those
        trained (with ``--jobs`` above 1 also those queued in this sitting)."""
        c = self.cfg
        units = self.book.stage("train")["units"]
        out = []

        def trained(key: str) -> bool:
            u = units.get(key, {})
            if self.sched is not None and self.sched.known(f"train/{key}"):
                return True
            return u.get("state") == "done" and u.get("outcome") != "skipped"

        for method, algo, seed in ((m, a, s) for m in METHODS for a in c.algo_list()
                                   for s in c.seeds):
            key = policy_key(c, method, algo, seed)
            if trained(key):
                out.append((key, str(self.out / "train" / key), c.episodes))
        for seed in c.seeds if c.dt_steps else []:
            key = f"dt-s{seed}"
            if trained(key):
                out.append((key, str(self.out / "train" / key), c.episodes))
        if c.random_baseline:
            out.append(("random", "random", c.episodes))
        if c.llm_episodes:
            out.append(("llm", f"llm:{self.model_dir()}", c.llm_episodes))
        return out

    def evaluate(self) -> None:
        c = self.cfg
        settings = {"seed": c.eval_seed, "episodes": c.episodes, "llm_episodes": c.llm_episodes,
                    "random": c.random_baseline}
        if c.llm_context:
            settings["llm_context"] = c.llm_context
        settings["checkpoints"] = c.checkpoints
        settings = self.settings(settings)
        # a rerun with new seeds or other episodes redoes only what changed (units are kept
        # when their own settings match)
        with self.lock:
            st = self.book.stage("evaluate")
            was_done = st.get("state") == "done"
            old = st.get("settings") or {}
            keep = (old.get("seed") == c.eval_seed and old.get("episodes") == c.episodes
                    and old.get("checkpoints") == c.checkpoints)
            keep_llm = (old.get("seed") == c.eval_seed and old.get("episodes") == c.episodes
                        and old.get("llm_episodes") == c.llm_episodes
                        and old.get("llm_context") == settings.get("llm_context"))
            units = {k: v for k, v in st.get("units", {}).items()
                     if (keep_llm if k == "llm" else keep)}
            st["reused"] = was_done and old == settings and len(units) == len(st.get("units", {}))
            st["units"] = units
            st["settings"] = settings
            st["state"] = "pending"
            self.book.save()
        self.require("train", "ground")
        embedders: dict[str, Any] = {}
        (self.out / "eval").mkdir(parents=True, exist_ok=True)
        for pid, spec, n in self.policies():
            def work(pid=pid, spec=spec, n=n) -> dict:
                # a trained policy: each of its last `checkpoints` snapshots (the final policy
                # when the run has none), its score the mean over them
                with self.lock:
                    tu = self.book.stage("train")["units"].get(pid, {})
                if tu.get("outcome") == "skipped":  # queued beside its training: no policy
                    return {"outcome": "skipped", "reason": "its training was skipped"}
                ckpts = self.checkpoint_specs(spec)
                specs = [ck_spec for _, ck_spec in ckpts]
                log = self.logs / f"evaluate-{pid}.log"
                if self.sched is None:
                    dicts = _evaluate_checkpoints(self.env.name, specs, n, c.eval_seed,
                                                  c.llm_context, log, embedders)
                else:
                    dicts = self.sched.call(_worker_evaluate, self.env.name, specs, n,
                                            c.eval_seed, c.llm_context, str(log))
                runs = []
                for (step, ck_spec), d in zip(ckpts, dicts):
                    d["policy_id"], d["spec"], d["step"] = pid, ck_spec, step
                    if len(ckpts) > 1:
                        (self.out / "eval" / pid).mkdir(parents=True, exist_ok=True)
                        write_json_atomic(self.out / "eval" / pid / f"step-{step}.json", d)
                    runs.append(d)
                d = dict(runs[-1])
                d["policy_id"], d["spec"] = pid, spec
                if len(runs) > 1:
                    # episodes: the last checkpoint's (each one's: OUT/eval/PID/step-N.json)
                    d["episodes_checkpoint"] = runs[-1]["step"]
                    d["categories"] = mean_over_checkpoints(runs)
                    d["wall_time_s"] = round(sum(r.get("wall_time_s", 0.0) for r in runs), 3)
                if spec not in ("random",) and not spec.startswith("llm:"):
                    d["checkpoints"] = [{"step": r["step"], "spec": r["spec"],
                                         "success": {k: v["success_rate"]
                                                     for k, v in r["categories"].items()}}
                                        for r in runs]
                    d["score"] = (f"mean of the last {len(runs)} checkpoints" if len(runs) > 1
                                  else "the final policy (the run kept no snapshots)")
                write_json_atomic(self.out / "eval" / f"{pid}.json", d)
                return {"success": {k: v["success_rate"] for k, v in d["categories"].items()},
                        "checkpoints": len(runs)}

            # with --jobs above 1 a policy's evaluation starts once its own training has ended
            needs = ((f"train/{pid}",) if (self.out / "train" / pid) == Path(spec)
                     else ("ground",) if spec.startswith("llm:") else ())
            self.unit("evaluate", pid, work, needs=needs)
        self.finish("evaluate", outputs=[str(self.out / "eval")])

    def checkpoint_specs(self, spec: str) -> list[tuple[int | None, str]]:
        """(step, policy folder) of what to evaluate for ``spec``: a train run's last
        ``checkpoints`` snapshots, else the spec itself (its final policy, a baseline)."""
        if spec == "random" or spec.startswith(("llm:", "expert")):
            return [(None, spec)]
        from kalm.rl.policy import policy_dir, snapshot_dirs

        snaps = snapshot_dirs(spec, last=self.cfg.checkpoints)
        if not snaps:
            meta = json.loads((policy_dir(spec) / "policy.json").read_text())
            return [(meta.get("step"), spec)]
        return [(int(p.name[len("step-"):]), str(p)) for p in snaps]

    def load_policy(self, spec: str, embedders: dict[str, Any]):
        return _load_policy(spec, embedders, self.env.name, self.cfg.eval_seed,
                            self.cfg.llm_context)

    def results(self) -> dict[str, Any]:
        self.wait_for("evaluate")
        self.begin("results", {}, redo_on_change=True)
        t0 = time.time()
        self.book.stage("results")["state"] = "done"  # as the table will show it
        res = build_results(self.out, self.cfg, self.book.data)
        write_json_atomic(self.out / "results.json", res)
        (self.out / "results.md").write_text(results_markdown(res))
        st = self.book.stage("results")
        st["units"] = {}
        st["wall_s"] = round(time.time() - t0, 2)
        self.finish("results", outputs=[str(self.out / "results.json"),
                                        str(self.out / "results.md")])
        return res


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


def _dt_algo(environment) -> str:
    """The Decision Transformer of an environment's action kind."""
    return "discrete_dt" if environment.action.discrete else "dt"


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 2)


def mean_over_checkpoints(evals: list[dict]) -> dict[str, dict[str, Any]]:
    """One policy's score per category from the evaluations of its checkpoints (the paper's
    protocol: the mean of the last 5): success_rate is the mean of the checkpoints' rates,
    episodes their sum, stderr the binomial one over those pooled episodes,
    checkpoint_success_rates the rates themselves."""
    cats: dict[str, dict[str, Any]] = {}
    for cat in dict.fromkeys(c for e in evals for c in e["categories"]):
        ms = [e["categories"][cat] for e in evals if cat in e["categories"]]
        rates = [float(m["success_rate"]) for m in ms]
        n = int(sum(m["episodes"] for m in ms))
        p = float(np.mean(rates))
        cats[cat] = {"success_rate": p, "episodes": n,
                     "stderr": math.sqrt(p * (1 - p) / n) if n > 1 else 0.0,
                     "mean_length": float(np.mean([m.get("mean_length", 0.0) for m in ms])),
                     "checkpoints": len(ms), "checkpoint_success_rates": rates}
    return cats


def _method_stats(evals: list[dict]) -> dict[str, Any]:
    """Success per category over the seeds' evaluations of one method (rates in %)."""
    cats: dict[str, Any] = {}
    per_seed_novel = []
    for cat in CATEGORIES:
        rates = [e["categories"][cat]["success_rate"] for e in evals if cat in e["categories"]]
        eps = [e["categories"][cat]["episodes"] for e in evals if cat in e["categories"]]
        if not rates:
            cats[cat] = None
            continue
        mean = float(np.mean(rates))
        n_eps = int(sum(eps))
        pooled = float(np.average(rates, weights=eps))
        se_eps = math.sqrt(pooled * (1 - pooled) / n_eps) if n_eps > 1 else 0.0
        se_seeds = float(np.std(rates, ddof=1) / math.sqrt(len(rates))) if len(rates) > 1 else None
        se = se_seeds if se_seeds is not None else se_eps
        cats[cat] = {"mean": _pct(mean), "stderr": _pct(se),
                     "stderr_seeds": _pct(se_seeds), "stderr_episodes": _pct(se_eps),
                     "per_seed": [_pct(r) for r in rates], "episodes": n_eps}
    for e in evals:
        if all(c in e["categories"] for c in NOVEL):
            rates = [e["categories"][c]["success_rate"] for c in NOVEL]
            per_seed_novel.append(float(np.mean(rates)))
    novel = None
    if per_seed_novel:
        m = float(np.mean(per_seed_novel))
        if len(per_seed_novel) > 1:
            se = float(np.std(per_seed_novel, ddof=1) / math.sqrt(len(per_seed_novel)))
            se_s = se
        else:
            se_s = None
            se = math.sqrt(sum((cats[c]["stderr_episodes"] / 100) ** 2 for c in NOVEL)) / len(NOVEL)
        novel = {"mean": _pct(m), "stderr": _pct(se), "stderr_seeds": _pct(se_s),
                 "per_seed": [_pct(r) for r in per_seed_novel]}
    return {"categories": cats, "novel_mean": novel, "seeds": len(evals)}


def build_results(out: Path, cfg: ReproduceConfig, book: dict) -> dict[str, Any]:
    """Everything results.md shows, from OUT's evaluations, imagine summaries and stages.json."""
    stages = book.get("stages", {})
    ev_units = stages.get("evaluate", {}).get("units", {})
    tr_units = stages.get("train", {}).get("units", {})

    def load_eval(pid: str) -> dict | None:
        p = out / "eval" / f"{pid}.json"
        if ev_units.get(pid, {}).get("state") != "done" or not p.exists():
            return None
        return json.loads(p.read_text())

    methods: dict[str, Any] = {}
    several = len(cfg.algo_list()) > 1
    main_algo = cfg.algo_list()[0]
    for algo, method in ((a, m) for a in cfg.algo_list() for m in METHODS):
        keys = [policy_key(cfg, method, algo, s) for s in cfg.seeds]
        evals = [e for k in keys if (e := load_eval(k)) is not None]
        skipped = [tr_units[k].get("reason") for k in keys
                   if tr_units.get(k, {}).get("outcome") == "skipped"]
        entry = _method_stats(evals) if evals else {"categories": {c: None for c in CATEGORIES},
                                                    "novel_mean": None, "seeds": 0}
        if skipped:
            entry["skipped"] = skipped[0]
        if _without_train_args(tr_units, keys, cfg.train_args):
            entry["without_train_args"] = True
        data = [tr_units[k] for k in keys if tr_units.get(k, {}).get("real_transitions") is not None]
        if data:
            entry["real_transitions"] = data[0].get("real_transitions")
            entry["imagined_transitions"] = data[0].get("imagined_transitions")
        ckpts = {}
        for k in keys:
            e = load_eval(k)
            if e is not None and e.get("checkpoints") is not None:
                ckpts[k] = [c_.get("step") for c_ in e["checkpoints"]]
        if ckpts:
            entry["checkpoints"] = ckpts
            entry["score"] = _score_text([len(v) for v in ckpts.values()])
        if several:
            entry["method"], entry["algo"] = method, algo
        # CLEVR's results keep their keys: its main algorithm's rows are METHOD, the others
        # METHOD-ALGO (Meta-World's are all METHOD-ALGO)
        rkey = method if cfg.env == "clevr" and algo == main_algo else policy_key(cfg, method, algo)
        methods[rkey] = entry
    if cfg.dt_steps:
        keys = [f"dt-s{s}" for s in cfg.seeds]
        evals = [e for k in keys if (e := load_eval(k)) is not None]
        if evals:
            entry = _method_stats(evals)
            entry["algo_name"] = next((tr_units[k].get("argv", [None] * 3)[2] for k in keys
                                       if k in tr_units), None)
            entry["steps"] = cfg.dt_steps
            entry["real_transitions"] = next((tr_units[k].get("real_transitions") for k in keys
                                              if tr_units.get(k, {}).get("real_transitions")),
                                             None)
            entry["imagined_transitions"] = 0
            ckpts = {k: [c_.get("step") for c_ in e["checkpoints"]]
                     for k in keys if (e := load_eval(k)) is not None and e.get("checkpoints")}
            if ckpts:
                entry["checkpoints"] = ckpts
                entry["score"] = _score_text([len(v) for v in ckpts.values()])
            methods["dt"] = entry
    for pid in ("random", "llm"):
        e = load_eval(pid)
        if e is not None:
            methods[pid] = _method_stats([e])
            methods[pid]["spec"] = e.get("spec")

    paper_env = PAPER_BY_ENV.get(cfg.env, {})
    imagined: dict[str, Any] = {}
    for suite in NOVEL:
        p = out / "imagine" / suite / "summary.json"
        if p.exists():
            s = json.loads(p.read_text())
            m = s["categories"].get(suite) or s["overall"]
            imagined[suite] = {
                "rollouts": m["rollouts"], "match_rate": _pct(m.get("match_rate")),
                "realistic_rollout_rate": _pct(m.get("realistic_rollout_rate")),
                "replay_success_rate": _pct(m.get("replay_success_rate")),
                "out_of_workbench_rate": _pct(m.get("out_of_workbench_rate")),
                "cycle_consistency": _pct(m.get("cycle_consistency")),
                "mean_steps": m.get("mean_steps"),
                "rollouts_per_s": s.get("generation", {}).get("rollouts_per_s"),
                "paper_match_rate": paper_env.get("match_rate", {}).get(suite),
            }
    kept = _filter_counts(out, cfg)
    for suite, k in kept.items():
        if suite in imagined:
            imagined[suite]["kept_by_filter"] = k

    if cfg.env == "clevr":
        family = "cql" if "cql" in cfg.algo else "bc"
        paper = {"novel_mean": PAPER["novel_mean"][family], "match_rate": PAPER["match_rate"],
                 "imaginebench_hard": PAPER["imaginebench_hard"]}
        if several:
            paper["novel_mean_by_algo"] = {a: PAPER["novel_mean"]["cql" if "cql" in a else "bc"]
                                           for a in cfg.algo_list()}
    else:
        paper = copy.deepcopy(paper_env)
    stage_rows = {}
    for name in STAGES:
        st = stages.get(name)
        if st is None:
            continue
        stage_rows[name] = {"state": st.get("state"), "wall_s": st.get("wall_s"),
                            "reused": bool(st.get("reused")), "note": st.get("note"),
                            "units": {k: {"state": v.get("outcome") or v.get("state"),
                                          "wall_s": v.get("wall_s")}
                                      for k, v in st.get("units", {}).items()}}
    extra = ({"algos": cfg.algo_list()} if several else {}) if cfg.env == "clevr" else {
        "env": cfg.env, "algos": cfg.algo_list()}
    return {
        "preset": cfg.preset,
        **extra,
        "config": asdict(cfg),
        "categories": list(CATEGORIES),
        "novel": list(NOVEL),
        "stderr": ("across seeds (std / sqrt(seeds)) when there are 2 or more seeds, else the "
                   "binomial standard error over the episodes; stderr_episodes is always the "
                   "binomial one over all episodes pooled"),
        "novel_mean_definition": "unweighted mean of the rephrase, easy and hard success rates",
        "score": (f"a trained policy's success per category is the mean over its last "
                  f"{cfg.checkpoints} checkpoints (the train run's snapshots of its last epoch "
                  "ends; the final policy when a run kept none), then mean ± stderr over seeds"),
        "volume": {"setting": cfg.volume, "imagined": imagined_volume(cfg),
                   "oracle": dict(cfg.oracle_episodes), "oracle_parity": cfg.oracle_parity},
        "methods": methods,
        "imagined": imagined,
        "paper": paper,
        "stages": stage_rows,
        "total_wall_s": round(sum((r.get("wall_s") or 0.0) for r in stage_rows.values()), 1),
        # each sitting of the command from its start to its end (the one writing these results:
        # to now); with --jobs above 1 units overlap, so the stages' wall times sum to more
        "sittings": [{"started": st.get("started"), "stages": st.get("stages"),
                      "jobs": st.get("jobs"),
                      "wall_s": st["wall_s"] if st.get("wall_s") is not None
                      else round(time.time() - st.get("t0", time.time()), 1),
                      "finished": st.get("wall_s") is not None}
                     for st in book.get("sittings", [])],
    }


def _score_text(counts: list[int]) -> str:
    """How a method's seeds were scored, from their checkpoint counts."""
    if counts and min(counts) == max(counts):
        n = counts[0]
        return f"mean of the last {n} checkpoints" if n > 1 else "the final policy"
    return "mean of the last " + "/".join(str(n) for n in counts) + " checkpoints per seed"


def _filter_counts(out: Path, cfg: ReproduceConfig) -> dict[str, int]:
    """Imagined rollouts per suite that kalm_filtered's filter keeps (from validity.csv)."""
    from kalm.rl.config import parse_filter
    from kalm.rl.data import filter_imagined, load_imagined_sources

    counts = {}
    for suite in NOVEL:
        folder = out / "imagine" / suite
        if not (folder / "imagined.npz").exists():
            continue
        try:
            (_, ds), = load_imagined_sources([folder])
            kept, _ = filter_imagined(ds.episodes, parse_filter(cfg.filter))
        except Exception:
            continue
        counts[suite] = len(kept)
    return counts


_LABELS = {
    "kalm": "KALM (real + imagined)",
    "kalm_filtered": "KALM, filtered imagined",
    "real_only": "real data only",
    "oracle": "oracle (real + expert data of the novel goals)",
    "dt": "Decision Transformer (real data only)",
    "random": "random policy (floor)",
    "llm": "LLM as policy",
}


def _cell(v: dict | None) -> str:
    if not v or v.get("mean") is None:
        return "n/a"
    return f"{v['mean']:.1f} ± {v['stderr']:.1f}"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _label(key: str, m: dict) -> str:
    """A results row's name: the method's label, with its algorithm when there are several."""
    label = _LABELS.get(m.get("method", key), key)
    if m.get("algo"):
        label += f", {_ALGO_LABELS.get(m['algo'], m['algo'])}"
    return label


def _embedder_label(cfg: dict[str, Any]) -> str:
    """The results' name of the policies' goal embedder (``grounded`` spelled out)."""
    if cfg.get("embedder") == "grounded":
        return f"lm:{cfg.get('grounded') or 'OUT/ground'} (the run's grounded LM)"
    return str(cfg.get("embedder"))


def _imagined_with(cfg: dict[str, Any]) -> str:
    """The header's end: the imagined initial states, the decoding, the grounded model."""
    return (f"; imagined initial states seeded with {cfg['imagine_seed']}"
            + (f", imagined with goal-guided decoding (`--imagine-guide {cfg['imagine_guide']}`: "
               "of the candidate actions (the LM's likeliest; with continuous actions the LM's "
               "and seeded perturbations of it), the one whose predicted state is closest to the "
               "goal"
               + (f", scored {cfg['imagine_guide_horizon']} predicted steps on "
                  f"(`--imagine-guide-horizon {cfg['imagine_guide_horizon']}`)"
                  if (cfg.get("imagine_guide_horizon") or 1) > 1 else "")
               + (", candidates whose predicted path crosses the goal's wall ruled out "
                  "(`--imagine-guide-obstacles`)" if cfg.get("imagine_guide_obstacles") else "")
               + "; not the paper's greedy decoding)" if cfg.get("imagine_guide") else "")
            + (f", each rollout written on {cfg['imagine_settle']} steps past the first state "
               f"where its goal holds (`--imagine-settle {cfg['imagine_settle']}`; the paper "
               "stops there)" if cfg.get("imagine_settle") else "")
            + f". Grounded model: `{cfg['grounded'] or 'grounded here (OUT/ground)'}`.")


def _steps_text(cfg: dict[str, Any], algos: list[str]) -> str:
    """'20000 gradient steps (DiscreteCQL 10000)': the policies' steps, per algorithm where
    ``algo_steps`` sets them."""
    own = {a: n for a, n in (cfg.get("algo_steps") or {}).items() if a in algos}
    if own and len(own) == len(algos) and len(set(own.values())) == 1:
        return f"{next(iter(own.values()))} gradient steps"
    text = f"{cfg['steps']} gradient steps"
    if own:
        text += " (" + ", ".join(f"{_ALGO_LABELS.get(a, a)} {n}" for a, n in own.items()) + ")"
    return text


def _env_results_markdown(res: dict[str, Any]) -> list[str]:
    """The lines of results.md above its data tables for an environment other than CLEVR (the
    paper's figures there are per category)."""
    cfg = res["config"]
    paper = res["paper"]
    seeds = ",".join(str(s) for s in cfg["seeds"])
    algos = ", ".join(_ALGO_LABELS.get(a, a) for a in res.get("algos", [cfg["algo"]]))
    upper = paper.get("category_upper", {})
    lines = [
        f"# KALM reproduction on {res.get('env', cfg.get('env'))}: preset `{res['preset']}`",
        "",
        f"Algorithms {algos} (every method with each), "
        f"{_steps_text(cfg, res.get('algos', [cfg['algo']]))}, seeds "
        f"{seeds}, goal embedder `{_embedder_label(cfg)}`, imagined ratio {cfg['imagined_ratio']}, "
        f"kalm_filtered filter `{cfg['filter']}`. Evaluation: seed {cfg['eval_seed']}, "
        f"{cfg['episodes']} episodes per category for every policy"
        + (f" ({cfg['llm_episodes']} for the LLM as policy, once"
           + (f", prompt of the last {cfg['llm_context']} steps" if cfg.get("llm_context") else "")
           + ")" if cfg["llm_episodes"] else "")
        + _imagined_with(cfg),
        "",
        _volume_line(res),
        "",
        f"Success rate (%) per goal category: each trained policy's score is the mean of the "
        f"last {cfg.get('checkpoints', 5)} checkpoints, then the mean over seeds ± standard error "
        "(across seeds with 2 or more seeds, else binomial over the episodes). *novel* is the "
        "unweighted mean of rephrase, easy and hard.",
        "",
        "| method | train | rephrase | easy | hard | novel |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in res["methods"].items():
        cats = m["categories"]
        label = _label(key, m)
        if key == "llm":
            n = cats["train"]["episodes"] if cats.get("train") else "?"
            label += f" ({n} ep./cat.)"
        if m.get("skipped"):
            label += " (skipped: nothing passed the filter)"
        lines.append(f"| {label} | " + " | ".join(_cell(cats.get(c)) for c in CATEGORIES)
                     + f" | {_cell(m.get('novel_mean'))} |")
    if upper:
        lines.append("| paper, KALM (bar-chart axis tops: its figures lie below) | "
                     + " | ".join(f"< {upper[c]:.0f}" for c in CATEGORIES) + " | - |")
    lines += ["", f"Paper: {paper.get('note', '-')}. The paper's setting: Llama-2-7B fully "
              "fine-tuned, 500k gradient steps, mean of the last 5 checkpoints over 3 seeds.", ""]
    return lines


def _without_train_args(tr_units: dict, keys: list[str], train_args: list[str]) -> bool:
    """Whether some trained unit of ``keys`` ran without the run's extra ``train`` options (a
    unit reused from a run made without them)."""
    n = len(train_args)
    argvs = [tr_units[k]["argv"] for k in keys if tr_units.get(k, {}).get("argv")]
    return bool(n) and any(list(a[-n:]) != list(train_args) for a in argvs)


def results_markdown(res: dict[str, Any]) -> str:
    cfg = res["config"]
    if cfg.get("env", "clevr") != "clevr":
        return _results_tail(res, _env_results_markdown(res))
    paper = res["paper"]
    seeds = ",".join(str(s) for s in cfg["seeds"])
    lines = [
        f"# KALM reproduction: preset `{res['preset']}`",
        "",
        (f"Algorithms {', '.join(_ALGO_LABELS.get(a, a) for a in res['algos'])} (every method "
         "with each)" if res.get("algos") else f"Algorithm `{cfg['algo']}`")
        + f", {_steps_text(cfg, res.get('algos') or [cfg['algo']])}, seeds {seeds}, goal embedder "
        f"`{_embedder_label(cfg)}`, imagined ratio {cfg['imagined_ratio']}, kalm_filtered filter "
        f"`{cfg['filter']}`. Evaluation: seed {cfg['eval_seed']}, {cfg['episodes']} episodes per "
        f"category for every policy"
        + (f" ({cfg['llm_episodes']} for the LLM as policy, once)" if cfg["llm_episodes"] else "")
        + _imagined_with(cfg)
        + (f" Extra `train` options of every policy but the Decision Transformer: "
           f"`{shlex.join(cfg['train_args'])}`."
           if cfg.get("train_args") else ""),
        "",
        _volume_line(res),
        "",
        f"Success rate (%) per goal category: each trained policy's score is the mean of the "
        f"last {cfg.get('checkpoints', 5)} checkpoints (its train run's snapshots of its last "
        "epoch ends; the final policy for a run that kept none), then the mean over seeds ± "
        "standard error (across seeds with 2 or more seeds, else binomial over the episodes). "
        "*novel* is the unweighted mean of rephrase, easy and hard.",
        "",
        "| method | train | rephrase | easy | hard | novel | paper novel | paper hard |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pn, ph = paper["novel_mean"], paper["imaginebench_hard"]
    by_algo = paper.get("novel_mean_by_algo", {})
    for key, m in res["methods"].items():
        cats = m["categories"]
        label = _label(key, m)
        if m.get("without_train_args"):
            label += " (reused: trained without the extra options)"
        if m.get("score") and m["score"] != f"mean of the last {cfg.get('checkpoints', 5)} checkpoints":
            label += f" ({m['score']})"
        if key == "llm":
            n = cats["train"]["episodes"] if cats.get("train") else "?"
            label += f" ({n} ep./cat.)"
        if m.get("skipped"):
            label += " (skipped: nothing passed the filter)"
        method = m.get("method", key)
        pnov = by_algo.get(m["algo"], pn).get(method) if m.get("algo") else pn.get(method)
        phard = ph.get(method)
        lines.append(f"| {label} | " + " | ".join(_cell(cats.get(c)) for c in CATEGORIES)
                     + f" | {_cell(m.get('novel_mean'))} | {'-' if pnov is None else pnov}"
                     + f" | {'-' if phard is None else phard} |")
    lines += [
        "",
        f"Paper: {pn['note']}. {ph['note']} (a different benchmark, listed for scale). The "
        "paper's setting: Llama-2-7B fully fine-tuned on 100k pairs, 500k gradient steps, "
        "mean of the last 5 checkpoints over 3 seeds.",
        "",
    ]
    return _results_tail(res, lines)


def _volume_line(res: dict[str, Any]) -> str:
    """results.md's sentence on the imagined and oracle data volume."""
    vol = res.get("volume")
    if not vol:
        return ""
    im, orc = vol["imagined"], vol["oracle"]
    cfg = res["config"]
    text = (f"Imagined data (`--volume {vol['setting']}`): "
            + ", ".join(f"{im[s]:,} {s}" for s in NOVEL) + " rollouts ("
            + ", ".join(f"{cfg['imagine_goals'][s]} x {cfg['imagine_per_goal'][s]}" for s in NOVEL)
            + " goals x rollouts per goal")
    if cfg.get("env", "clevr") != "clevr":
        text += ")"
    else:
        text += ("; the paper's volume: 5,600 rephrase, 72,400 easy, 1,680 hard)"
                 if vol["setting"] == "paper" else
                 "; the paper imagined 5,600 rephrase, 72,400 easy, 1,680 hard: `--volume paper`)")
    if vol.get("oracle_parity"):
        text += (". The oracle gets as many expert episodes of the novel goals as the imagined "
                 "rollouts it stands beside (" + ", ".join(f"{orc[s]:,} {s}" for s in NOVEL) + ").")
    else:
        text += (". Oracle expert episodes (set by the preset or the user): "
                 + ", ".join(f"{orc[s]:,} {s}" for s in NOVEL) + ".")
    return text


def _results_tail(res: dict[str, Any], lines: list[str]) -> str:
    """The data, imagination and stage tables under the results table."""
    data_rows = [(k, m) for k, m in res["methods"].items() if m.get("real_transitions") is not None]
    if data_rows:
        lines += ["Training data (transitions; imagined = the share-0.5 source):", "",
                  "| method | real | imagined / oracle |", "|---|---|---|"]
        for k, m in data_rows:
            lines.append(f"| {k} | {m['real_transitions']} | {m['imagined_transitions']} |")
        lines.append("")
    if res["imagined"]:
        lines += ["Imagined rollouts (the grounded LM, `imagine` stage):", "",
                  "| suite | rollouts | match % (paper) | realistic % | replay % | off-bench % | "
                  "kept by filter | rollouts/s |",
                  "|---|---|---|---|---|---|---|---|"]
        for suite, m in res["imagined"].items():
            def p(v):
                return "-" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.2f}"
            pm = m.get("paper_match_rate")
            lines.append(f"| {suite} | {m['rollouts']} | {p(m['match_rate'])} "
                         f"({'-' if pm is None else f'{pm:.0f}'}) | "
                         f"{p(m['realistic_rollout_rate'])} | "
                         f"{p(m['replay_success_rate'])} | {p(m['out_of_workbench_rate'])} | "
                         f"{m.get('kept_by_filter', '-')} | {p(m.get('rollouts_per_s'))} |")
        lines.append("")
    lines += ["Stages (wall time summed over sittings; *reused*: already done when this run "
              "started):", "", "| stage | state | wall time | reused | units |",
              "|---|---|---|---|---|"]
    for name, st in res["stages"].items():
        units = ", ".join(f"{k} {_fmt_s(u['wall_s'])}" for k, u in st["units"].items())
        note = f" {st['note']}" if st.get("note") else ""
        lines.append(f"| {name} | {st['state']} | {_fmt_s(st['wall_s'])} | "
                     f"{'yes' if st['reused'] else 'no'} | {units or '-'}{note} |")
    lines += ["", f"Total wall time: {_fmt_s(res['total_wall_s'])}"
              + (" (the stages' sum; units of parallel sittings overlap)."
                 if any((s.get("jobs") or 1) > 1 for s in res.get("sittings", [])) else "."), ""]
    sittings = res.get("sittings") or []
    if sittings:
        lines += ["Sittings of the command (start to end, every stage it ran):", "",
                  "| started | stages | worker processes | wall time |", "|---|---|---|---|"]
        for st in sittings:
            wall = _fmt_s(st["wall_s"]) + ("" if st.get("finished") else " (to the results)")
            lines.append(f"| {st['started']} | {', '.join(st.get('stages') or [])} | "
                         f"{st.get('jobs') or 1} | {wall} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------


def reproduce(cfg: ReproduceConfig, out: str | Path, stages: list[str] | None = None,
              say: Callable[[str], None] | None = None, jobs: int = 1) -> dict[str, Any]:
    """Run (or resume) the pipeline of ``cfg`` into ``out``; returns results.json's content
    (or {} when ``stages`` leaves out the results stage). ``jobs``: worker processes for the
    units (1 = every unit in this process, one after another; 0 = ``auto_jobs()``); the results
    do not depend on it beyond the floating-point noise of other thread counts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReproduceError(f"{out} is a file; --out must be a folder")
    if jobs < 0:
        raise ReproduceError(f"--jobs must be 0 (auto) or more; got {jobs}")
    jobs = jobs or auto_jobs()
    out.mkdir(parents=True, exist_ok=True)
    say = say or (lambda msg: print(msg, flush=True))
    todo = list(STAGES) if not stages else list(stages)
    bad = [s for s in todo if s not in STAGES]
    if bad:
        raise ReproduceError(f"unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")
    pipe = _Pipeline(cfg, out, say)
    pipe.book.data["config"] = asdict(cfg)
    pipe.book.data["command"] = shlex.join(sys.argv)
    t_all = time.time()
    sitting = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_all)),
               "t0": round(t_all, 1), "stages": [s for s in STAGES if s in todo], "jobs": jobs,
               "wall_s": None}
    pipe.book.data.setdefault("sittings", []).append(sitting)
    pipe.book.save()
    write_json_atomic(out / "config.json", asdict(cfg))
    if jobs > 1:
        pipe.sched = _Units(jobs, pipe.lock)
        say(f"[reproduce] {jobs} worker processes, {pipe.sched.threads} CPU thread(s) each")
    res: dict[str, Any] = {}
    started = {}
    try:
        for name in STAGES:
            if name not in todo:
                continue
            started[name] = time.time()
            r = getattr(pipe, name)()
            if name == "results":
                res = r
            if pipe.sched is None:
                say(f"[{name}] finished ({time.time() - started[name]:.0f} s this run)")
            else:
                say(f"[{name}] queued")
        if pipe.sched is not None:
            pipe.sched.wait()
    except BaseException as e:
        if pipe.sched is not None:
            pipe.sched.stop(interrupted=isinstance(e, KeyboardInterrupt))
        raise
    if pipe.sched is not None:
        pipe.sched.stop(interrupted=False)
    elapsed = round(time.time() - t_all, 1)
    with pipe.lock:  # each sitting's end-to-end wall time (stage wall times sum the units')
        sitting["wall_s"] = elapsed
        pipe.book.save()
    say(f"[reproduce] done in {elapsed:.0f} s ({jobs} worker process{'es' if jobs > 1 else ''})")
    return res
