"""How well a grounded CLEVR-Robot LM translates both ways, measured against the simulator.

(``bench/grounding_bench.py`` prints these; Meta-World's counterparts are in
``bench/metaworld_grounding_bench.py``.)

- explanation accuracy: its explanation of a held-out real rollout parses to the true goal; and
  how often it is at least a true account of the rollout, since a rollout often makes more than
  one relation true;
- match rate: rollouts it generates from real initial states whose generated states meet the goal;
- replay success: the same rollouts' actions run in the simulator from the same initial state;
- next-action accuracy with real states fed in (exact / ball / direction), beside the
  copy-the-previous-action baseline;
- dynamics error: mean distance between predicted and simulated next ball positions, beside the
  predict-nothing-moves baseline.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from kalm.envs.clevr.sim import ClevrRobotEnv
from kalm.evaluate import episode_plan, initial_state
from kalm.envs.clevr.goals.parser import goals_equivalent, parse_goal_text
from kalm.envs.clevr.goals.spec import achieved_relations, describes, goal_from_dict
from kalm.envs.clevr.goals.suites import GoalItem
from kalm.llm.generate import explain_rollouts, generate_rollouts, next_actions, predict_next_states
from kalm.llm.model import GroundedLM

__all__ = ["explanation_accuracy", "rollout_quality", "next_action_accuracy", "dynamics_error",
           "replay_actions"]


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def replay_actions(env: ClevrRobotEnv, goal, obs0: np.ndarray, actions: np.ndarray) -> bool:
    """Run ``actions`` in the simulator from ``obs0``; does the goal hold at any step?"""
    env.reset(options={"obs": obs0, "goal": goal})
    start = env.get_obs()
    for a in actions:
        env.step(int(a))
        if goal.holds(env.get_obs(), start):
            return True
    return False


def explanation_accuracy(model: GroundedLM, episodes: Sequence, batch_size: int = 16,
                         max_steps: int = 12, constrained: bool = False) -> dict:
    """Fraction of rollouts whose explanation parses to a goal equivalent to the true one.

    Beside it: ``valid``, the fraction whose explanation is a true account of the rollout (it did
    not hold at the start and holds at the end, ``kalm.envs.clevr.goals.spec.describes``), and for relation
    goals how ambiguous the task is: ``ambiguous`` is the fraction of rollouts that made more than
    one relation true (their goal cannot be read off the states with certainty), and
    ``chance_among_valid`` the exact accuracy of naming one of those relations at random.
    ``constrained``: explanations decoded among the true accounts
    (``explain_rollouts(..., constrained=True)``).
    """
    eps = [e for e in episodes if e.success and len(e.actions) > 0]
    ok, valid, src, dst, d = 0, 0, 0, 0, 0
    n_rel, ambiguous, chance = 0, 0, 0.0
    examples = []
    for sl in _batches(len(eps), batch_size):
        chunk = eps[sl]
        obs = [e.observations[: max_steps + 1] for e in chunk]
        texts = explain_rollouts(model, obs, [e.actions[:max_steps] for e in chunk],
                                 constrained=constrained)
        for e, o, t in zip(chunk, obs, texts):
            true = goal_from_dict(e.goal)
            g = parse_goal_text(t)
            good = g is not None and goals_equivalent(g, true)
            ok += good
            valid += g is not None and describes(g, o[0], o[-1])
            if true.kind == "relation":
                achieved = achieved_relations(o[0], o[-1])
                n_rel += 1
                ambiguous += len(achieved) > 1
                hit = any(goals_equivalent(r, true) for r in achieved)
                chance += hit / len(achieved) if achieved else 0.0
            if g is not None and g.kind == "relation" and true.kind == "relation":
                src += g.src == true.src
                dst += g.dst == true.dst
                d += g.dir == true.dir
            if len(examples) < 10:
                examples.append({"true": e.text, "explained": t, "correct": bool(good)})
    n, nr = max(1, len(eps)), max(1, n_rel)
    return {"explanation_accuracy": ok / n, "valid": valid / n, "src": src / n, "dst": dst / n,
            "dir": d / n, "ambiguous": ambiguous / nr, "chance_among_valid": chance / nr,
            "episodes": len(eps), "examples": examples}


def rollout_quality(model: GroundedLM, items: Sequence[GoalItem], episodes: int, seed: int = 0,
                    batch_size: int = 16, max_steps: int = 15) -> dict:
    """Match rate and replay success per category on seeded initial states (the eval protocol)."""
    env = ClevrRobotEnv()
    plan = episode_plan(items, episodes, seed)
    starts = [initial_state(env, it.goal, s)[0] for it, s in plan]
    per_cat: dict[str, dict[str, list]] = {}
    t0 = time.perf_counter()
    n_distinct = []
    for sl in _batches(len(plan), batch_size):
        chunk = plan[sl]
        rolls = generate_rollouts(model, [it.text for it, _ in chunk], np.stack(starts[sl]),
                                  [it.goal for it, _ in chunk], max_steps=max_steps)
        for (it, _), s0, r in zip(chunk, starts[sl], rolls):
            c = per_cat.setdefault(it.category, {"match": [], "replay": []})
            c["match"].append(r.goal_met)
            c["replay"].append(replay_actions(env, it.goal, s0, r.actions))
            n_distinct.append(len(set(r.actions.tolist())))
    dt = time.perf_counter() - t0
    out = {cat: {"match_rate": float(np.mean(v["match"])), "replay_success": float(np.mean(v["replay"])),
                 "rollouts": len(v["match"])} for cat, v in per_cat.items()}
    return {"categories": out, "rollouts_per_s": len(plan) / dt,
            "mean_distinct_actions": float(np.mean(n_distinct))}


def next_action_accuracy(model: GroundedLM, episodes: Sequence, max_steps: int = 12,
                         batch_size: int = 32) -> dict:
    """Teacher-forced next action after every real prefix: exact, ball and direction accuracy."""
    texts, obs, acts, true, prev = [], [], [], [], []
    for e in episodes:
        for t in range(min(len(e.actions), max_steps)):
            texts.append(e.text)
            obs.append(e.observations[: t + 1])
            acts.append(e.actions[:t])
            true.append(int(e.actions[t]))
            prev.append(int(e.actions[t - 1]) if t > 0 else -1)
    pred = []
    for sl in _batches(len(texts), batch_size):
        pred.extend(next_actions(model, texts[sl], obs[sl], acts[sl]).tolist())
    pred, true, prev = np.array(pred), np.array(true), np.array(prev)
    first = np.array([len(a) == 0 for a in acts])
    return {
        "exact": float(np.mean(pred == true)),
        "ball": float(np.mean(pred // 8 == true // 8)),
        "direction": float(np.mean(pred % 8 == true % 8)),
        "first_step_exact": float(np.mean((pred == true)[first])) if first.any() else 0.0,
        "copy_previous_baseline": float(np.mean(prev == true)),
        "predictions": int(len(pred)),
    }


def dynamics_error(model: GroundedLM, episodes: Sequence, limit: int = 512, batch_size: int = 64) -> dict:
    """Mean per-ball distance between predicted and real next positions, and the copy baseline."""
    s, a, s2 = [], [], []
    for e in episodes:
        for t in range(len(e.actions)):
            s.append(e.observations[t]); a.append(int(e.actions[t])); s2.append(e.observations[t + 1])
    s, a, s2 = np.array(s[:limit]), np.array(a[:limit]), np.array(s2[:limit])
    pred = np.concatenate([predict_next_states(model, s[sl], a[sl]) for sl in _batches(len(s), batch_size)])

    def per_ball(x, y):
        return float(np.linalg.norm((x - y).reshape(-1, 5, 2), axis=-1).mean())

    pushed = a // 8
    moved = np.linalg.norm((pred - s2).reshape(-1, 5, 2), axis=-1)[np.arange(len(a)), pushed]
    return {"dynamics_error": per_ball(pred, s2), "nothing_moves_baseline": per_ball(s, s2),
            "pushed_ball_error": float(moved.mean()), "transitions": int(len(s))}
