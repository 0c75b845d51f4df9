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


CONTACT = SHIPPED.parent / "clevr_contact"


def _same_adapter_configs(model, base) -> tuple[dict, dict]:
    """Asserts ``model`` ships ``base``'s adapter byte for byte; returns both config.json."""
    import hashlib
    import json

    name = "adapter/adapter_model.safetensors"
    assert hashlib.md5((model / name).read_bytes()).hexdigest() == \
        hashlib.md5((base / name).read_bytes()).hexdigest()
    return tuple(json.loads((d / "config.json").read_text()) for d in (model, base))


def test_contact_model_shares_the_shipped_lm_and_changes_only_the_physics_head():
    import json

    cfg, base = _same_adapter_configs(CONTACT, SHIPPED)
    assert cfg["dynamics_head"] == "contact" and base["dynamics_head"] == "physics"
    assert {k: v for k, v in cfg.items() if k not in ("dynamics_head", "env", "rollout_windows",
                                                      "summary_features")} == \
        {k: v for k, v in base.items() if k != "dynamics_head"}
    refit = json.loads((CONTACT / "grounded.json").read_text())["refit_dynamics"]
    assert refit["from"] == "assets/grounded/clevr" and refit["head"] == "contact"
    assert "bench/refit_dynamics.py" in (CONTACT / "README.md").read_text()


@pytest.mark.slow
def test_contact_model_stops_a_pushed_ball_at_the_ball_in_its_way():
    from kalm.envs.clevr import ClevrRobotEnv, encode_action
    from kalm.llm.generate import predict_next_states
    from kalm.llm.train import load_grounded

    model = load_grounded(CONTACT)
    # red with blue right beside it on its right, the others far off; red pushed right
    s0 = np.array([[0.0, 0.0, 0.22, 0.0, -0.4, 0.5, 0.0, 0.5, 0.4, 0.5]], dtype=np.float32)
    a = encode_action("red", 0)
    sim = ClevrRobotEnv()
    real = sim.simulate(s0[0].astype(np.float64), a)
    nxt = predict_next_states(model, s0, np.array([a]))[0]
    gap = np.linalg.norm(nxt[0:2] - nxt[2:4])
    assert gap > 0.15, "red must not pass into blue"
    assert np.abs(nxt - real).max() < 0.08


MW = SHIPPED.parent / "metaworld"
MW_HISTORY = SHIPPED.parent / "metaworld_history"


def test_metaworld_history_model_shares_the_lm_and_changes_only_the_state_head():
    import json

    from safetensors.numpy import load_file

    cfg, base = _same_adapter_configs(MW_HISTORY, MW)
    assert cfg["dynamics_history"] is True and not base.get("dynamics_history", False)
    assert {k: v for k, v in cfg.items() if k != "dynamics_history"} == base
    assert json.loads((MW_HISTORY / "grounded.json").read_text())["dynamics_history"] is True
    new, old = load_file(str(MW_HISTORY / "codec.safetensors")), load_file(str(MW / "codec.safetensors"))
    assert set(new) == set(old)
    changed = {k for k in new if new[k].shape != old[k].shape or not np.array_equal(new[k], old[k])}
    assert changed and all(k.startswith(("state_head.", "norm_state.")) for k in changed)
    refit = json.loads((MW_HISTORY / "refit.json").read_text())
    assert refit["history"] and refit["source"] == "assets/grounded/metaworld"
    # the figures the README quotes: drift after 5 steps cut from 18 to under 4 mm
    assert refit["drift_mm_before"]["5"] > 15 and refit["drift_mm_after"]["5"] < 4


@pytest.mark.slow
def test_metaworld_history_model_loads_and_follows_the_hands_velocity():
    import torch

    from kalm.envs import get_env
    from kalm.envs.metaworld.tasks import TaskGoal
    from kalm.llm.generate import generate_rollouts
    from kalm.llm.train import load_grounded

    model = load_grounded(MW_HISTORY)
    assert model.codec.history
    env = get_env("metaworld")
    s0 = env.imagine_start(TaskGoal("reach"), 1000)[None]
    r = generate_rollouts(model, ["Reach the target."], s0, [TaskGoal("reach")], max_steps=12)[0]
    assert np.all(np.isfinite(r.observations)) and len(r.actions) >= 1
    # from rest, the first imagined hand step is small, as the simulator's (about 1 mm)
    assert np.linalg.norm(r.observations[1, :3] - s0[0, :3]) < 0.004
    with torch.no_grad():
        h = torch.zeros(1, model.codec.hidden_size)
        obs = torch.from_numpy(s0)
        moving = obs.clone()
        moving[0, 0] -= 0.008  # the hand moving +8 mm a step in x
        fast = model.codec.next_state(h, obs, torch.zeros(1, 4), moving)[0, 0]
        rest = model.codec.next_state(h, obs, torch.zeros(1, 4), obs)[0, 0]
    assert fast - rest > 0.002
