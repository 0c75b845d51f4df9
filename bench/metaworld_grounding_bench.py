"""How well a grounded Meta-World LM translates: next actions, dynamics, and its imagined rollouts.

    python bench/metaworld_grounding_bench.py assets/grounded/metaworld \
        [--imagined runs/metaworld/imagine_bench] [--episodes 40] [--json OUT.json]

1. **Next action with real states fed in** (teacher forcing on the model's held-out validation
   episodes, ``split.json``): mean absolute error of the LM's action per channel against the
   expert's, beside two baselines that read no goal: the mean action of the data, and zero.
2. **Dynamics** (``predict_next_states`` on the same episodes' transitions): hand and object
   position error of the predicted next state against the real one, beside "nothing moves"
   (``s' = s``), in millimetres.
3. **Imagined rollouts** (``--imagined``: a ``python -m kalm imagine --env metaworld`` run folder):
   per suite the match and replay rates, realistic transitions, and the paper's unrealistic-
   transition measures: rollouts (and transitions) with an object floating without being held,
   and with a gripper move beyond one action's reach; out of workspace; generation speed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

PAPER = {  # KALM, Meta-World, rephrase / easy / hard (% of rollouts)
    "floating": {"rephrase": 39.5, "easy": 35.5, "hard": 22.3},
    "beyond_limits": {"rephrase": 44.6, "easy": 47.9, "hard": 31.1},
}


def _r(v) -> list[float]:
    return [round(float(x), 4) for x in v]


def _val_episodes(folder: Path, n: int):
    from kalm.data.episodes import load_dataset
    from kalm.llm.config import GroundConfig

    cfg = GroundConfig.load(folder / "config.json")
    split = json.loads((folder / "split.json").read_text())
    ds = load_dataset(cfg.data)
    eps = [ds[int(i)] for i in split["val"]][:n]
    return cfg, ds, eps


def action_and_dynamics(model, ds, eps, window: int) -> dict:
    from kalm.envs.metaworld.state import ENTITIES, entity_slice
    from kalm.llm.generate import next_actions, predict_next_states

    pred, real, texts, prefix_o, prefix_a = [], [], [], [], []
    for ep in eps:
        o, a = np.asarray(ep.observations, np.float32), np.asarray(ep.actions, np.float32)
        for t in range(0, len(a), 3):  # every third step
            s = max(0, t - window + 1)  # the model's context: a window of its training length
            texts.append(ep.text)
            prefix_o.append(o[s : t + 1])
            prefix_a.append(a[s:t])
            real.append(a[t])
    t0 = time.perf_counter()
    for i in range(0, len(texts), 64):
        pred.append(next_actions(model, texts[i : i + 64], prefix_o[i : i + 64], prefix_a[i : i + 64]))
    act_s = time.perf_counter() - t0
    pred, real = np.concatenate(pred), np.stack(real)
    all_a = np.concatenate([np.asarray(e.actions, np.float32) for e in ds.episodes])
    mean_a = all_a.mean(0)
    out = {
        "next_action": {
            "predictions": int(len(real)),
            "mae_lm": _r(np.abs(pred - real).mean(0)),
            "mae_mean_action": _r(np.abs(mean_a - real).mean(0)),
            "mae_zero": _r(np.abs(real).mean(0)),
            "mae_lm_overall": round(float(np.abs(pred - real).mean()), 4),
            "mae_mean_action_overall": round(float(np.abs(mean_a - real).mean()), 4),
            "seconds": round(act_s, 1),
        }
    }
    S, A, N = [], [], []
    for ep in eps:
        o, a = np.asarray(ep.observations, np.float32), np.asarray(ep.actions, np.float32)
        S.append(o[:-1]); A.append(a); N.append(o[1:])
    S, A, N = np.concatenate(S), np.concatenate(A), np.concatenate(N)
    P = np.concatenate([predict_next_states(model, S[i : i + 128], A[i : i + 128])
                        for i in range(0, len(S), 128)])

    def pos_err(x, y, sl):
        return np.linalg.norm(x[:, sl] - y[:, sl], axis=-1)

    hand = slice(0, 3)
    objs = [entity_slice(e) for e in ENTITIES]
    present = [np.abs(S[:, sl]).sum(-1) > 0 for sl in objs]

    def obj_err(x):
        errs = [pos_err(x, N, slice(sl.start, sl.start + 3))[m] for sl, m in zip(objs, present)]
        return float(np.concatenate(errs).mean()) * 1000

    moved = np.linalg.norm(N[:, hand] - S[:, hand], axis=-1) > 1e-3
    out["dynamics"] = {
        "transitions": int(len(S)),
        "hand_error_mm_lm": round(float(pos_err(P, N, hand).mean()) * 1000, 2),
        "hand_error_mm_nothing_moves": round(float(pos_err(S, N, hand).mean()) * 1000, 2),
        "hand_error_mm_lm_moving": round(float(pos_err(P, N, hand)[moved].mean()) * 1000, 2),
        "hand_error_mm_nothing_moves_moving": round(float(pos_err(S, N, hand)[moved].mean()) * 1000, 2),
        "object_error_mm_lm": round(obj_err(P), 2),
        "object_error_mm_nothing_moves": round(obj_err(S), 2),
    }
    return out


def imagined(folder: Path) -> dict:
    from kalm.imagine.generate import load_imagined

    ds, vs = load_imagined(folder)
    summary = json.loads((folder / "summary.json").read_text())
    out = {}
    cats = {}
    for ep, v in zip(ds.episodes, vs):
        cats.setdefault(ep.category, []).append(v)
    for cat, group in cats.items():
        n = len(group)
        trans = sum(v.transitions for v in group)
        fl = [v for v in group if v.extra.get("floating_steps")]
        jp = [v for v in group if v.extra.get("gripper_jump_steps")]
        out[cat] = {
            "rollouts": n,
            "match": round(100 * np.mean([v.goal_met for v in group]), 1),
            "replay": round(100 * np.mean([v.replay_success for v in group]), 1),
            "realistic_transitions": round(100 * sum(v.realistic_transitions for v in group) / max(trans, 1), 1),
            "floating_rollouts": round(100 * len(fl) / n, 1),
            "floating_transitions": round(100 * sum(len(v.extra["floating_steps"]) for v in fl) / max(trans, 1), 1),
            "beyond_limits_rollouts": round(100 * len(jp) / n, 1),
            "beyond_limits_transitions": round(100 * sum(len(v.extra["gripper_jump_steps"]) for v in jp) / max(trans, 1), 1),
            "out_of_workspace_rollouts": round(100 * np.mean([v.out_of_workbench for v in group]), 1),
            "hand_error_vs_replay_mm": round(1000 * float(np.nanmean([v.dynamics_error_mean for v in group
                                                                       if v.dynamics_error_mean is not None])), 1),
            "mean_steps": round(float(np.mean([v.steps for v in group])), 1),
            "cycle": summary["categories"][cat].get("cycle_consistency"),
            "paper_floating": PAPER["floating"].get(cat),
            "paper_beyond_limits": PAPER["beyond_limits"].get(cat),
        }
    out["generation"] = summary["generation"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--imagined", default=None)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from kalm.llm.train import load_grounded

    folder = Path(args.model)
    model = load_grounded(folder)
    cfg, ds, eps = _val_episodes(folder, args.episodes)
    report = {"model": str(folder), "validation_episodes": len(eps)}
    report.update(action_and_dynamics(model, ds, eps, cfg.max_steps_per_episode))
    if args.imagined:
        report["imagined"] = imagined(Path(args.imagined))
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
