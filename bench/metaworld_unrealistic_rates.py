"""The paper's unrealistic-transition measures of a Meta-World reproduction's imagined data, per
suite, beside the paper's figures: the share of imagined rollouts with an object floating without
being held, and with a gripper move beyond one action's reach (and the share of states /
transitions flagged), plus the wall tasks' through-the-wall check where the set carries it, and
the rollouts in a scene with a button, handle or lock where such a part moved untouched (computed
from the states, so older sets get it too). Read from each rollout's stored validity record and
states (no simulator).

    python bench/metaworld_unrealistic_rates.py runs/mw25 [runs/mw24 ...]
"""

from __future__ import annotations

import sys

import numpy as np

from kalm.data.episodes import load_dataset
from kalm.envs.metaworld.validity import UNTOUCHED_REACH, present_entities, untouched_moves

PAPER = {"floating": {"rephrase": 39.5, "easy": 35.5, "hard": 22.3},
         "beyond dynamics limits": {"rephrase": 44.6, "easy": 47.9, "hard": 31.1}}


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for run in sys.argv[1:]:
        for suite in ("rephrase", "easy", "hard"):
            ds = load_dataset(f"{run}/imagine/{suite}/imagined.npz")
            n = len(ds.episodes)
            flo = jump = wall = walls = transitions = flo_states = jump_steps = 0
            parts = untouched = 0
            for ep in ds.episodes:
                v = ep.info["validity"]
                x = v.get("extra") or {}
                flo += bool(x.get("floating_steps"))
                jump += bool(x.get("gripper_jump_steps"))
                flo_states += len(x.get("floating_steps") or [])
                jump_steps += len(x.get("gripper_jump_steps") or [])
                transitions += v["transitions"]
                if "through_wall_steps" in x:
                    walls += 1
                    wall += bool(x["through_wall_steps"])
                o = np.asarray(ep.observations, np.float64)
                if set(present_entities(o[0])) & set(UNTOUCHED_REACH):
                    parts += 1
                    untouched += bool(len(o) > 1 and untouched_moves(o[:-1], o[1:]).any())
            t = max(transitions, 1)
            print(f"{run} {suite}: {n} rollouts; floating {100 * flo / n:.1f}% of rollouts "
                  f"({100 * flo_states / t:.2f}% of states; paper {PAPER['floating'][suite]}), "
                  f"gripper beyond one action's reach {100 * jump / n:.1f}% "
                  f"({100 * jump_steps / t:.2f}% of transitions; paper "
                  f"{PAPER['beyond dynamics limits'][suite]})"
                  + (f"; through the wall {wall} of {walls} wall-task rollouts" if walls else "")
                  + (f"; a part moved untouched in {untouched} of {parts} rollouts with one"
                     if parts else ""))


if __name__ == "__main__":
    main()
