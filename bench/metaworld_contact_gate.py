"""Experiment: Meta-World imagination with the state head's articulated parts held still unless
the hand is within reach of them (``validity.UNTOUCHED_REACH``), the way the presence mask keeps
absent entities still. It is applied at decoding to a model grounded without it, so it overrides
what the LM wrote: an experiment on where button-press-wall's imagination breaks, not a shipped
option. Geometry of the states only; the simulator is never called to write a state.

    python bench/metaworld_contact_gate.py assets/grounded/metaworld_history runs/s26/wall_hist_gate \
        --goals runs/s26/wall_goals.jsonl [--guide-obstacles] [--settle 10]

``--goals`` defaults to the easy suite's wall goals. It prints, per task, match / replay and the
rollouts in which a part moved untouched.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gate(codec) -> None:
    """Wrap ``codec``'s presence mask: an articulated part's slot changes only with the hand's
    point within its reach in the current state."""
    import torch

    from kalm.envs.metaworld.state import entity_slice
    from kalm.envs.metaworld.validity import UNTOUCHED_REACH

    plain = codec._mask

    def gated(obs: torch.Tensor) -> torch.Tensor:
        m = plain(obs).clone()
        hand = obs[:, 0:3].float()
        for name, reach in UNTOUCHED_REACH.items():
            sl = entity_slice(name)
            near = (obs[:, sl.start: sl.start + 3].float() - hand).norm(dim=-1) <= reach
            m[:, sl] = m[:, sl] * near.float().unsqueeze(-1)
        return m

    codec._mask = gated


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--goals", help="a goals file (default: the easy suite's wall-task goals)")
    p.add_argument("--per-goal", type=int, default=2)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--guide", type=int, default=8)
    p.add_argument("--guide-horizon", type=int, default=5)
    p.add_argument("--guide-obstacles", action="store_true")
    p.add_argument("--settle", type=int, default=0, help="steps written past the goal (imagine --settle)")
    a = p.parse_args()

    from kalm.envs import get_env
    from kalm.envs.metaworld.validity import untouched_moves
    from kalm.imagine.generate import imagine
    from kalm.llm.train import load_grounded

    env = get_env("metaworld")
    items = (env.read_goals_file(a.goals) if a.goals
             else [it for it in env.suite_items("easy") if it.goal.task.endswith("-wall")])
    model = load_grounded(a.model)
    gate(model.codec)
    ds, vs = imagine(model, items, per_goal=a.per_goal, seed=a.seed, out=a.out, batch_size=32,
                     explain=False, progress=False, guide=a.guide, guide_horizon=a.guide_horizon,
                     guide_obstacles=a.guide_obstacles, settle=a.settle, overwrite=True,
                     source={"model": a.model, "bench": "metaworld_contact_gate"})
    per = collections.defaultdict(lambda: [0, 0, 0, 0])
    for ep, v in zip(ds.episodes, vs):
        o = np.asarray(ep.observations, np.float64)
        row = per[ep.goal["task"]]
        row[0] += 1
        row[1] += v.goal_met
        row[2] += v.replay_success
        row[3] += bool(len(o) > 1 and untouched_moves(o[:-1], o[1:]).any())
    print("task                 n  match  replay  moved untouched")
    for task, (n, m, r, u) in sorted(per.items()):
        print(f"{task:18s} {n:3d} {m:6d} {r:7d} {u:8d}")
    wall = [v for t, v in per.items() if t.endswith("-wall")]
    if wall:
        n, r = sum(w[0] for w in wall), sum(w[2] for w in wall)
        print(f"wall tasks: {r} of {n} imagined rollouts replay to success ({100 * r / n:.1f}%)")


if __name__ == "__main__":
    main()
