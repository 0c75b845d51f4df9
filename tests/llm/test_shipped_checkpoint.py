"""The shipped grounded checkpoint loads on the real default LM and writes a rollout."""

from pathlib import Path

import numpy as np
import pytest

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "grounded" / "clevr"


@pytest.mark.slow
def test_shipped_grounded_checkpoint_loads_and_generates():
    from kalm.llm.generate import generate_rollouts, predict_next_states
    from kalm.llm.train import load_grounded

    model = load_grounded(SHIPPED)
    s0 = np.array([[0.3, 0.0, -0.3, 0.0, -0.4, 0.5, 0.0, 0.5, 0.4, 0.5]], dtype=np.float32)
    r = generate_rollouts(model, ["Put the red ball to the left of the blue ball"], s0, max_steps=3)[0]
    assert r.observations.shape[1] == 10 and len(r.actions) >= 1
    assert np.all(np.isfinite(r.observations))
    # its dynamics: pushing red to the right moves red right by about a push length
    nxt = predict_next_states(model, s0, np.array([0]))[0]
    assert 0.05 < nxt[0] - s0[0, 0] < 0.3
