"""Imagine: the grounded LM writes rollouts for goal texts; each is checked and saved.

``imagine(model, items, per_goal, seed, out)`` makes ``per_goal`` rollouts for every goal item,
in batches:

1. rollout ``j = i * per_goal + k`` (item ``i``, its ``k``-th start) starts from a seeded reset
   where its goal does not already hold (``kalm.evaluate.initial_state``); the base reset seed is
   derived from ``(seed, i, k)`` only, so a rollout does not depend on the others;
2. ``generate_rollouts`` writes the rollout greedily from the goal text and ``s_0``, stopping when
   the goal's success rule holds on a generated state or at the horizon (``max_steps``, default
   the goal's: CLEVR 50, or 1 for ``move``; Meta-World 100-200);
3. with ``explain``, ``explain_rollouts`` asks the LM what goal the rollout pursues (cycle
   consistency);
4. the environment's ``check_rollout`` scores it (``kalm.imagine.validity``), and rewards are
   labelled from the generated states with the environment's rules (``reward_labels``: dense and
   sparse, judged against ``s_0``), terminal at the step where the goal is met. Non-finite
   rewards (from non-finite generated states) are stored as 0.

The environment is the model's (``GroundedLM.env_name``).

Nothing is filtered: every rollout is saved, as KALM did; ``filter_rollouts`` selects later.

Run folder ``out``:

    config.json     the ImagineConfig, the goals, and a fingerprint of the model's trained weights
    status.json     state, rollouts done / total (RunDir; the app polls it)
    metrics.csv     one row per batch: timings and its match and realism rates
    parts/          finished batches (part-{first:06d}-{last:06d}.npz, written atomically)
    imagined.npz    every rollout as an Episode(imagined=True, info={"validity": {...}}), the
                    offline dataset format (``load_dataset`` reads it)
    validity.csv    one row per rollout: index, category, text, goal, every validity field
    summary.json    ``categories`` (aggregate per category), ``overall``, ``generation``
                    (rollouts/s), the tolerances used

A rerun with the same config (same goals, seeds, batch size, horizon and model weights) reuses the
finished batches in ``parts/`` and makes only the missing ones; a run folder made with another
config is an error unless ``overwrite=True`` (which discards its parts).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from kalm.data.episodes import (
    Dataset,
    DatasetError,
    Episode,
    atomic_write,
    load_dataset,
    make_meta,
    save_dataset,
)
from kalm.envs import get_env
from kalm.evaluate import initial_state
from kalm.imagine.validity import RolloutValidity, aggregate, validity_rates
from kalm.runs import RunDir, write_json_atomic

__all__ = [
    "ImagineConfig",
    "ImagineError",
    "imagine",
    "rollout_base_seed",
    "model_fingerprint",
    "load_imagined",
]

_PART_PREFIX = "part-"
_VALIDITY_FIELDS = (
    "steps", "goal_met", "success_step", "realistic", "transitions", "realistic_transitions",
    "first_unrealistic_step", "dynamics_error_mean", "dynamics_error_max", "out_of_workbench",
    "out_of_workbench_states", "overlap", "overlap_states", "absurd", "absurd_states",
    "replay_success", "replay_final_error", "explanation", "cycle_consistent", "explanation_true",
    "step_errors",
)


class ImagineError(ValueError):
    """A run folder or input that imagine cannot use; the message says what to do."""


@dataclass
class ImagineConfig:
    """Imagining rollouts with a grounded LM (saved as ``config.json`` in the run folder)."""

    per_goal: int = 4
    """Rollouts per goal item, each from its own seeded initial state."""
    seed: int = 0
    """Seed of the initial states (rollout k of item i: a reset seeded from (seed, i, k))."""
    batch_size: int = 32
    """Rollouts generated together (also the size of a resumable part)."""
    max_steps: int | None = None
    """Cap on a rollout's length (None: the goal's horizon, 50; move goals always 1)."""
    explain: bool = True
    """Ask the LM to explain each rollout (cycle consistency); costs about one more generation."""
    replan: int = 0
    """Physical decoding: tries per generated step that the environment calls implausible (off
    the workbench, balls inside each other or passing through one; geometry of the states, never
    the simulator), each with the LM's next best action (0 = plain greedy decoding)."""
    guide: int = 0
    """Goal-guided decoding: each step takes, of the LM's ``guide`` likeliest actions, the one
    whose next state (as the LM predicts it) is closest to the goal by the goal's own rule,
    implausible ones ruled out (``kalm.llm.generate``; 0 = greedy; supersedes ``replan``). The
    simulator is never called; the goal spec is, as for stopping at success."""
    guide_horizon: int = 1
    """Goal-guided decoding with continuous actions: each candidate is scored by the state this
    many steps on, the candidate held (``kalm.llm.generate``; 1 = the next state)."""
    guide_obstacles: bool = False
    """Goal-guided decoding with continuous actions: candidates whose predicted path crosses a
    fixed obstacle of the goal's scene (a wall the task puts in the way; the environment's
    ``obstacle_crossings``, geometry only) are ruled out. The scene's geometry then keeps the
    imagined path off the wall: what the LM knows of walls is no longer what is measured."""
    settle: int = 0
    """Steps the LM goes on writing after its goal first holds on a generated state (0: the
    rollout ends there, as the paper's generation does). Generated states cross the success
    rule's threshold at its edge, where a small error of the dynamics leaves the simulator's
    replay just outside it; settling lets the LM's own actions carry the rollout into the goal's
    region (``generate_rollouts(settle=)``; the LM's states and actions only)."""
    explain_constrained: bool = False
    """Explanations kept to true accounts: decoding restricted to the training-phrasing texts of
    the goals the rollout's own (generated) states made true, the LM choosing among them
    (``explain_rollouts(..., constrained=True)``; False = free greedy text, as published)."""

    def validate(self) -> "ImagineConfig":
        if self.per_goal < 1:
            raise ValueError(f"per_goal must be at least 1; got {self.per_goal}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 (or None); got {self.max_steps}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed}")
        if self.replan < 0:
            raise ValueError(f"replan must be 0 or more; got {self.replan}")
        if self.guide < 0:
            raise ValueError(f"guide must be 0 or more; got {self.guide}")
        if self.guide_horizon < 1:
            raise ValueError(f"guide_horizon must be at least 1; got {self.guide_horizon}")
        if self.guide_obstacles and self.guide < 2:
            raise ValueError("guide_obstacles rules out guided candidates: it needs guide >= 2")
        if self.settle < 0:
            raise ValueError(f"settle must be 0 or more; got {self.settle}")
        return self


def rollout_base_seed(seed: int, item_index: int, k: int) -> int:
    """The base reset seed of the ``k``-th rollout of goal item ``item_index``."""
    ss = np.random.SeedSequence([int(seed), int(item_index), int(k)])
    return int(ss.generate_state(1)[0] % (2**31 - 1))


def model_fingerprint(model) -> str:
    """A short hash of what training changed in ``model``: its codec and trainable LM weights."""
    h = hashlib.sha1()
    tensors = [(f"codec.{k}", v) for k, v in model.codec.state_dict().items()]
    tensors += [(f"lm.{k}", v) for k, v in model.lm.named_parameters() if v.requires_grad]
    for name, t in sorted(tensors, key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Parts (finished batches) and resuming
# --------------------------------------------------------------------------------------------


def _part_path(out: Path, first: int, last: int) -> Path:
    return out / "parts" / f"{_PART_PREFIX}{first:06d}-{last:06d}.npz"


def _load_parts(out: Path, fingerprint: str) -> dict[int, list[Episode]]:
    """Finished batches by their first rollout index; parts of another config raise."""
    folder = out / "parts"
    found: dict[int, list[Episode]] = {}
    if not folder.is_dir():
        return found
    for p in sorted(folder.glob(f"{_PART_PREFIX}*.npz")):
        try:
            part = load_dataset(p)
        except DatasetError:
            continue  # unreadable: that batch is made again
        if part.meta.get("fingerprint") != fingerprint:
            raise ImagineError(
                f"{out} holds imagined rollouts made with another config or model; use a new "
                "--out folder, or pass overwrite=True (--overwrite) to discard them"
            )
        if part.episodes:
            found[int(part.episodes[0].info["index"])] = part.episodes
    return found


# --------------------------------------------------------------------------------------------
# One batch
# --------------------------------------------------------------------------------------------


def first_success(env, goal, observations: np.ndarray, start: np.ndarray) -> int | None:
    """First t >= 1 with ``goal`` holding on a finite ``observations[t]`` (judged against
    ``start``), or None; a goal of horizon 1 (CLEVR's ``move``) only on ``observations[1]``."""
    last = len(observations) - 1
    if env.goal_horizon(goal) == 1:
        last = min(1, last)
    for t in range(1, last + 1):
        s = observations[t]
        if np.all(np.isfinite(s)) and env.success(goal, s, start):
            return t
    return None


def rollout_end(env, goal, observations: np.ndarray, start: np.ndarray, settle: int = 0) -> int:
    """The number of actions a generated rollout keeps: up to its first success plus ``settle``
    steps (``ImagineConfig.settle``), all of them where the goal never held (generation already
    stops there; this guards the cut)."""
    steps = len(observations) - 1
    met = first_success(env, goal, observations, start)
    return steps if met is None else min(steps, met + max(0, int(settle)))


def _label(env, goal, observations: np.ndarray, met: int | None,
           start: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(dense rewards, sparse rewards, terminals) of a rollout, from its states. The terminal is
    the transition into the first state where the goal holds (``met``); a rollout that settled
    on past it (``ImagineConfig.settle``) ends on its last transition instead, where the goal
    still holds (``start``: the s_0 success is judged against), and with none where it no longer
    does (a rollout cut by time, not ended by its goal)."""
    T = len(observations) - 1
    if met is not None and met < T:
        holds = env.success(goal, observations[-1], observations[0] if start is None else start)
        met = T if holds else None
    with np.errstate(all="ignore"):
        dense, sparse = env.reward_labels(goal, observations)
    dense = np.asarray(dense, dtype=np.float64)
    sparse = np.asarray(sparse, dtype=np.float64)
    terminals = np.zeros(T, dtype=bool)
    if met is not None:
        terminals[met - 1] = True
    return (np.nan_to_num(dense, nan=0.0, posinf=0.0, neginf=0.0),
            np.nan_to_num(sparse, nan=0.0, posinf=0.0, neginf=0.0), terminals)


def _run_batch(model, env, sim, plan: list[dict], cfg: ImagineConfig) -> tuple[list[Episode], dict]:
    from kalm.llm.generate import explain_rollouts, generate_rollouts

    starts = np.stack([p["s0"] for p in plan]).astype(np.float32)
    t0 = time.perf_counter()
    stats: dict = {}
    rolls = generate_rollouts(model, [p["item"].text for p in plan], starts,
                              [p["item"].goal for p in plan], max_steps=cfg.max_steps,
                              replan=cfg.replan, stats=stats, guide=cfg.guide,
                              guide_horizon=cfg.guide_horizon,
                              guide_obstacles=cfg.guide_obstacles, settle=cfg.settle)
    t1 = time.perf_counter()
    # Cut each rollout at its first success, or ``settle`` steps after it (generation already
    # stops there).
    cut = []
    for p, s0, r in zip(plan, starts, rolls):
        T = rollout_end(env, p["item"].goal, r.observations, s0, cfg.settle)
        cut.append((r.observations[: T + 1], r.actions[:T]))
    texts = (explain_rollouts(model, [o for o, _ in cut], [a for _, a in cut],
                              constrained=cfg.explain_constrained)
             if cfg.explain else [None] * len(plan))
    t2 = time.perf_counter()
    episodes = []
    for p, s0, (obs, acts), text in zip(plan, starts, cut, texts):
        item = p["item"]
        v = env.check_rollout(item.goal, obs, acts, seed=p["reset_seed"], sim=sim,
                              explanation=text, start_obs=s0)
        dense, sparse, terminals = _label(env, item.goal, obs, v.success_step, s0)
        episodes.append(Episode(
            text=item.text, goal=item.goal.to_dict(), category=item.category, seed=p["reset_seed"],
            observations=obs, actions=acts, rewards=dense, rewards_sparse=sparse,
            terminals=terminals, success=v.goal_met, imagined=True, env=env.name,
            info={"index": p["index"], "item": p["item_index"], "k": p["k"],
                  "validity": v.to_dict()},
        ))
    t3 = time.perf_counter()
    return episodes, {"generate_s": t1 - t0, "explain_s": t2 - t1, "check_s": t3 - t2,
                      "physical": stats}


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return json.dumps([None if x is None else round(x, 5) for x in value])
    return value


def _write_validity_csv(
    path: Path, episodes: Sequence[Episode], validities: Sequence[RolloutValidity]
) -> None:
    header = ["index", "category", "text", "goal", "reset_seed", *_VALIDITY_FIELDS, "failure_types"]

    def write(f) -> None:
        import io

        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        w = csv.writer(text)
        w.writerow(header)
        for ep, v in zip(episodes, validities):
            d = v.to_dict()
            w.writerow([ep.info["index"], ep.category, ep.text, json.dumps(ep.goal), ep.seed,
                        *(_csv_value(d[k]) for k in _VALIDITY_FIELDS),
                        ";".join(v.failure_types())])
        text.flush()
        text.detach()

    atomic_write(path, write)


def _summary(env, episodes: Sequence[Episode], validities: Sequence[RolloutValidity],
             generation: dict, config: dict) -> dict:
    return {
        "rollouts": len(episodes),
        "categories": aggregate(validities, [ep.category for ep in episodes]),
        "overall": validity_rates(list(validities)),
        "generation": generation,
        "tolerances": env.validity_tolerances(),
        "config": config["imagine"],
        "model_fingerprint": config["model_fingerprint"],
    }


def load_imagined(out: str | Path) -> tuple[Dataset, list[RolloutValidity]]:
    """The dataset and validities of a finished imagine run folder."""
    path = Path(out) / "imagined.npz"
    if not path.exists():
        raise ImagineError(
            f"{out} holds no imagined.npz; run `python -m kalm imagine ... --out {out}`"
        )
    ds = load_dataset(path)
    return ds, [RolloutValidity.from_dict(ep.info["validity"]) for ep in ds.episodes]


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def imagine(
    model,
    items: list,
    per_goal: int,
    seed: int,
    out: str | Path,
    batch_size: int = 32,
    max_steps: int | None = None,
    explain: bool = True,
    progress: bool | Callable[[int, int], None] = True,
    overwrite: bool = False,
    source: dict | None = None,
    replan: int = 0,
    guide: int = 0,
    explain_constrained: bool = False,
    guide_horizon: int = 1,
    guide_obstacles: bool = False,
    settle: int = 0,
) -> tuple[Dataset, list[RolloutValidity]]:
    """Imagine ``per_goal`` rollouts per goal item with ``model`` (a ``GroundedLM``) into ``out``.

    See the module docstring for the protocol and the run folder. ``progress``: True for a tqdm
    bar, or a callback ``(rollouts done, total)``. ``source``: extra JSON recorded in
    ``config.json`` (where the model and goals came from). Returns the dataset (also saved as
    ``imagined.npz``) and one ``RolloutValidity`` per rollout, in rollout order. ``replan``:
    physical decoding (``ImagineConfig.replan``); ``guide``: goal-guided decoding
    (``ImagineConfig.guide``; ``guide_horizon``: ``ImagineConfig.guide_horizon``);
    ``explain_constrained``: explanations kept to true accounts
    (``ImagineConfig.explain_constrained``).
    """
    cfg = ImagineConfig(per_goal=per_goal, seed=seed, batch_size=batch_size,
                        max_steps=max_steps, explain=explain, replan=replan,
                        guide=guide, explain_constrained=explain_constrained,
                        guide_horizon=guide_horizon, guide_obstacles=guide_obstacles,
                        settle=settle).validate()
    items = list(items)
    if not items:
        raise ImagineError("no goals to imagine rollouts for")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ImagineError(f"{out} is a file; --out must be a run folder")
    imagine_cfg = asdict(cfg)
    for option in ("replan", "guide", "explain_constrained", "guide_obstacles", "settle"):  # runs made before the options keep their fingerprint
        if not imagine_cfg[option]:
            imagine_cfg.pop(option)
    if imagine_cfg["guide_horizon"] == 1:
        imagine_cfg.pop("guide_horizon")
    fingerprint_src = {
        "imagine": imagine_cfg,
        "goals": [it.to_dict() for it in items],
        "model_fingerprint": model_fingerprint(model),
    }
    key = json.dumps(fingerprint_src, sort_keys=True).encode()
    fingerprint = hashlib.sha1(key).hexdigest()[:16]
    config = {**fingerprint_src, "fingerprint": fingerprint, "source": source or {},
              "command": shlex.join(sys.argv)}

    if overwrite and (out / "parts").exists():
        shutil.rmtree(out / "parts")
    done_parts = _load_parts(out, fingerprint)
    run = RunDir(out, "imagine")
    run.save_config(config)

    plan = [
        {"index": i * cfg.per_goal + k, "item_index": i, "k": k, "item": item,
         "base_seed": rollout_base_seed(cfg.seed, i, k)}
        for i, item in enumerate(items) for k in range(cfg.per_goal)
    ]
    total = len(plan)
    batches = [plan[s : s + cfg.batch_size] for s in range(0, total, cfg.batch_size)]
    env = get_env(getattr(model, "env_name", "clevr"))
    sim = env.make()
    env_meta = {} if env.name == "clevr" else {"env": env.name}
    episodes: list[Episode] = []
    generated, gen_s, explain_s, check_s = 0, 0.0, 0.0, 0.0
    physical: dict[str, int] = {}
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="imagine", unit="rollout")
    t_start = time.perf_counter()
    try:
        run.status("running", step=0, total=total, message="starting")
        for b, batch in enumerate(batches):
            first = batch[0]["index"]
            reused = done_parts.get(first)
            wanted = [p["index"] for p in batch]
            if reused is not None and [e.info["index"] for e in reused] == wanted:
                episodes += reused
            else:
                for p in batch:
                    s0, p["reset_seed"] = initial_state(sim, p["item"].goal, p["base_seed"])
                    p["s0"] = np.asarray(s0, dtype=np.float32)
                new, times = _run_batch(model, env, sim, batch, cfg)
                save_dataset(Dataset(new, make_meta(kind="imagine-part", fingerprint=fingerprint, **env_meta)),
                             _part_path(out, first, batch[-1]["index"]))
                episodes += new
                generated += len(new)
                gen_s += times["generate_s"]
                explain_s += times["explain_s"]
                check_s += times["check_s"]
                for k, v in times["physical"].items():
                    physical[k] = physical.get(k, 0) + int(v)
                vs = [RolloutValidity.from_dict(e.info["validity"]) for e in new]
                rates = validity_rates(vs)
                run.log_metrics({
                    "batch": b, "first": first, "rollouts": len(new),
                    "generate_s": round(times["generate_s"], 3),
                    "explain_s": round(times["explain_s"], 3),
                    "check_s": round(times["check_s"], 3),
                    "rollouts_per_s": round(len(new) / max(times["generate_s"], 1e-9), 3),
                    "match_rate": rates["match_rate"],
                    "realistic_transition_rate": rates["realistic_transition_rate"],
                })
            run.status("running", step=len(episodes), total=total,
                       message=f"{len(episodes)}/{total} rollouts")
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(match=f"{np.mean([e.success for e in episodes]):.2f}")
            elif callable(progress):
                progress(len(episodes), total)
    except KeyboardInterrupt:
        run.status("stopped", step=len(episodes), total=total,
                   message="interrupted; rerun the same command to resume")
        raise
    except Exception as e:
        run.status("failed", step=len(episodes), total=total, message=str(e))
        raise
    finally:
        if bar is not None:
            bar.close()
        sim.close()

    validities = [RolloutValidity.from_dict(ep.info["validity"]) for ep in episodes]
    dataset = Dataset(episodes, make_meta(kind="imagine", command=config["command"], config=config, **env_meta))
    save_dataset(dataset, out / "imagined.npz")
    _write_validity_csv(out / "validity.csv", episodes, validities)
    generation = {
        "rollouts_generated": generated,
        "rollouts_resumed": total - generated,
        "generate_s": round(gen_s, 3),
        "explain_s": round(explain_s, 3),
        "check_s": round(check_s, 3),
        "wall_s": round(time.perf_counter() - t_start, 3),
        # generation alone (the LM), and with explanations and validity checks
        "rollouts_per_s": round(generated / gen_s, 3) if generated and gen_s > 0 else None,
        "rollouts_per_s_with_checks": (
            round(generated / (gen_s + explain_s + check_s), 3) if generated else None
        ),
    }
    if cfg.replan:
        # physical decoding this sitting: generated steps found implausible, alternative
        # actions tried, steps still implausible after every try
        generation["physical"] = {"replan": cfg.replan, **physical}
    if cfg.guide:
        # goal-guided decoding this sitting: steps decided among the LM's likeliest actions,
        # and those where another than the greedy one was taken
        generation["guided"] = {"guide": cfg.guide,
                                **{k: v for k, v in physical.items()
                                   if k in ("guided_steps", "changed_steps")}}
    if cfg.explain and cfg.explain_constrained:
        # explanations decoded among the true accounts the generated states allow
        generation["explanations"] = "constrained to the goals the rollout made true"
    write_json_atomic(out / "summary.json", _summary(env, episodes, validities, generation, config))
    run.status("done", step=total, total=total, message=f"{total} rollouts imagined")
    return dataset, validities
