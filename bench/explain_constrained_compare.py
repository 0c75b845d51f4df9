"""
On an imagined set made with `python -m kalm imagine ... --explain-constrained` (CLEVR-Robot):
the same rollouts explained freely (greedy text, as published), and the chance of naming the
intended goal by a uniform pick among the relations each rollout made true.

    python bench/explain_constrained_compare.py RUN_FOLDER GROUNDED_MODEL
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from kalm.data.episodes import load_dataset  # noqa: E402
from kalm.envs.clevr.goals.parser import parse_goal_text, goals_equivalent  # noqa: E402
from kalm.envs.clevr.goals.spec import achieved_relations, describes, goal_from_dict  # noqa: E402
from kalm.llm.generate import explain_rollouts  # noqa: E402
from kalm.llm.train import load_grounded  # noqa: E402

run, model_dir = sys.argv[1], sys.argv[2]
ds = load_dataset(f"{run}/imagined.npz")
eps = list(ds)
model = load_grounded(model_dir)
free = []
for k in range(0, len(eps), 32):
    chunk = eps[k:k + 32]
    free += explain_rollouts(model, [e.observations for e in chunk], [e.actions for e in chunk])
n = len(eps)
f_cycle = f_true = c_cycle = c_true = chance = 0.0
for e, t in zip(eps, free):
    goal = goal_from_dict(e.goal)
    o = e.observations
    g = parse_goal_text(t)
    f_cycle += goals_equivalent(g, goal)
    f_true += bool(g is not None and len(e.actions) > 0 and describes(g, o[0], o[-1]))
    v = e.info["validity"]
    c_cycle += bool(v["cycle_consistent"]); c_true += bool(v["explanation_true"])
    ach = achieved_relations(o[0], o[-1])
    chance += (sum(goals_equivalent(r, goal) for r in ach) / len(ach)) if ach else 0.0
print(json.dumps({"rollouts": n, "free": {"cycle": f_cycle / n, "true": f_true / n},
                  "constrained": {"cycle": c_cycle / n, "true": c_true / n},
                  "uniform_pick_among_true_cycle": chance / n}, indent=1))
