"""The LLM-as-policy baseline: the grounded LM picks each action from goal text + the real states.

At every step the policy feeds the grounded LM the rollout prompt for the goal text followed by
the real observations seen so far and the actions it took (``s0 a0 s1 ... s_t``) and takes the
action head's argmax at the last position: the same teacher-forced read-out that grounding's
next-action accuracy measures, now closed-loop in the simulator. The prompt and history stay in
the decoder's KV cache between steps (``kalm.llm.generate.ActionSession``), so a step costs two
new positions, not the whole history. This is KALM's "LLM as policy"
baseline: it uses only what the LM learned, no offline RL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from typing import Any

__all__ = ["LLMPolicy"]


class LLMPolicy:
    """Closed-loop actions from a grounded LM folder (``--policy llm:DIR``).

    ``context`` caps how many past steps the prompt keeps (the goal text always stays), so long
    hard episodes do not grow the prompt past what the LM was grounded on (default 16, or the
    rollout window a windowed model was grounded on).
    """

    def __init__(self, folder: str | Path, model=None, context: int | None = None) -> None:
        from kalm.llm.train import load_grounded

        self.folder = str(folder)
        self.name = f"llm:{folder}"
        self.model = model if model is not None else load_grounded(folder)
        window = int(getattr(self.model, "window", 0) or 0)
        self.context = int(context if context is not None else (window or 16))
        self._text = ""
        self._session = None

    def reset(self, goal: Any, obs: np.ndarray, text: str = "") -> None:
        if not text:
            from kalm.envs import get_env

            text = get_env(getattr(self.model, "env_name", "clevr")).describe(goal)
        from kalm.llm.generate import ActionSession

        self._text = text
        self._session = ActionSession(self.model, text, context=self.context)

    def act(self, obs: np.ndarray):
        if self._session is None:
            raise RuntimeError("call reset(goal, obs) before act(obs)")
        return self._session.act(obs)
