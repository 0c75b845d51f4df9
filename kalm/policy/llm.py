"""The LLM-as-policy baseline: the grounded LM picks each push from goal text + the real states.

At every step the policy feeds the grounded LM the rollout prompt for the goal text followed by
the real observations seen so far and the actions it took (``s0 a0 s1 ... s_t``) and takes the
action head's argmax at the last position: the same teacher-forced read-out that grounding's
next-action accuracy measures, now closed-loop in the simulator. This is KALM's "LLM as policy"
baseline: it uses only what the LM learned, no offline RL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kalm.goals.spec import Goal

__all__ = ["LLMPolicy"]


class LLMPolicy:
    """Closed-loop actions from a grounded LM folder (``--policy llm:DIR``).

    ``context`` caps how many past steps the prompt keeps (the goal text always stays), so long
    hard episodes do not grow the prompt past what the LM was grounded on.
    """

    def __init__(self, folder: str | Path, model=None, context: int = 16) -> None:
        from kalm.llm.train import load_grounded

        self.folder = str(folder)
        self.name = f"llm:{folder}"
        self.model = model if model is not None else load_grounded(folder)
        self.context = int(context)
        self._text = ""
        self._obs: list[np.ndarray] = []
        self._actions: list[int] = []

    def reset(self, goal: Goal, obs: np.ndarray, text: str = "") -> None:
        if not text:
            from kalm.goals.language import describe

            text = describe(goal)
        self._text = text
        self._obs = []
        self._actions = []

    def act(self, obs: np.ndarray) -> int:
        import torch

        from kalm.llm.generate import next_actions

        self._obs.append(np.asarray(obs, dtype=np.float32))
        k = min(len(self._actions), self.context)
        obs_hist = np.stack(self._obs[len(self._obs) - k - 1:])
        act_hist = np.asarray(self._actions[len(self._actions) - k:], dtype=np.int64)
        with torch.no_grad():
            a = int(next_actions(self.model, [self._text], [obs_hist], [act_hist])[0])
        self._actions.append(a)
        return a
