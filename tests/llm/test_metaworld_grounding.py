"""Grounding on Meta-World: the continuous-action codec, windowed rollouts, the CLI (tiny LM)."""

import json

import numpy as np
import pytest
import torch

from kalm.cli import main
from kalm.data.collect import collect_dataset
from kalm.envs import get_env
from kalm.envs.metaworld.codec import ENTITY_SLOTS
from kalm.envs.metaworld.state import STATE_DIM, entity_slice
from kalm.llm.base import tiny_lm
from kalm.llm.codec import VectorCodec
from kalm.llm.config import PRESETS, GroundConfig
from kalm.llm.generate import explain_rollouts, generate_rollouts, next_actions, predict_next_states
from kalm.llm.sequences import collate, consequence_sequence, dynamics_sequence, rollout_sequence
from kalm.llm.train import load_grounded, train_grounding

ENV = get_env("metaworld")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("mw") / "d.npz"
    collect_dataset(episodes=6, seed=0, out=path, progress=False, env="metaworld")
    return path


@pytest.fixture(scope="module")
def grounded(data, tmp_path_factory):
    cfg = GroundConfig(**{**PRESETS["tiny"], **ENV.grounding_defaults, "env": "metaworld",
                          "data": str(data), "steps": 6, "val_fraction": 0.0})
    lm, tok = tiny_lm()
    out = tmp_path_factory.mktemp("mwrun") / "run"
    train_grounding(cfg, out, lm=lm, tokenizer=tok, progress=False)
    return out


def _state(rng, present=("puck",)):
    s = np.zeros(STATE_DIM, np.float32)
    s[:7] = rng.uniform(-0.3, 0.3, 7)
    for e in present:
        s[entity_slice(e)] = rng.uniform(0.1, 0.5, 7)
    return s


def test_vector_codec_keeps_absent_entities_absent_and_actions_in_range():
    rng = np.random.default_rng(0)
    codec = VectorCodec(16, STATE_DIM, 4, codec_hidden=32, slots=ENTITY_SLOTS)
    obs = torch.from_numpy(np.stack([_state(rng), _state(rng, ("door handle", "lock"))]))
    h = torch.randn(2, 16) * 10
    nxt = codec.next_state(h, obs, torch.randn(2, 4))
    for i, present in enumerate([("puck",), ("door handle", "lock")]):
        for a, b in ENTITY_SLOTS:
            if not obs[i, a:b].abs().sum():
                assert torch.all(nxt[i, a:b] == 0), "an absent entity must stay all zeros"
    assert not torch.allclose(nxt[0, :7], obs[0, :7])
    a = codec.predict_action(h * 100, obs)
    assert a.shape == (2, 4) and a.abs().max() <= 1.0
    assert codec.embed_states(obs).shape == (2, 1, 16)
    assert codec.embed_actions(a).shape == (2, 16)


def test_vector_codec_regression_head_learns_a_mapping():
    torch.manual_seed(0)
    codec = VectorCodec(8, STATE_DIM, 4, codec_hidden=32, slots=ENTITY_SLOTS)
    rng = np.random.default_rng(1)
    obs = torch.from_numpy(np.stack([_state(rng) for _ in range(64)]))
    h = torch.zeros(64, 8)
    target = torch.tanh(obs[:, :4] * 3)  # an action that depends on the state
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    first = float(codec.action_loss(h, obs, target))
    for _ in range(200):
        opt.zero_grad()
        loss = codec.action_loss(h, obs, target)
        loss.backward()
        opt.step()
    assert float(loss) < 0.2 * first


def test_collate_holds_continuous_actions_and_marks_missing_ones():
    rng = np.random.default_rng(0)
    obs = np.stack([_state(rng) for _ in range(4)])
    acts = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    lm, tok = tiny_lm()
    batch = collate([rollout_sequence("push the puck", obs, acts),
                     dynamics_sequence(obs[0], acts[0], obs[1]),
                     consequence_sequence("push the puck", obs[0], obs[-1])], tok)
    assert batch.action_ids.dtype == torch.float32 and batch.action_ids.shape == (4, 4)
    assert batch.at_target.shape == (3, 4) and torch.allclose(batch.at_target, torch.from_numpy(acts))
    assert batch.state_obs.shape[1] == STATE_DIM
    # rollout and dynamics targets know the action; the consequence target has none (NaN row)
    assert batch.st_action.shape == (5, 4)
    known = ~torch.isnan(batch.st_action).any(-1)
    assert known.tolist() == [True, True, True, True, False]


def test_grounding_saves_a_metaworld_model_that_generates_window_by_window(grounded):
    model = load_grounded(grounded / "model", *tiny_lm())
    assert type(model.codec).__name__ == "VectorCodec" and model.env_name == "metaworld"
    assert model.window == ENV.grounding_defaults["max_steps_per_episode"] == 10
    meta = json.loads((grounded / "model" / "grounded.json").read_text())
    assert meta["env"] == "metaworld" and meta["codec"] == "vector"
    items = ENV.suite_items("easy")[:2]
    s0 = np.stack([ENV.imagine_start(it.goal, 3) for it in items])
    seen = []
    rolls = generate_rollouts(model, [it.text for it in items], s0, [it.goal for it in items],
                              max_steps=23, on_step=lambda t, O, A, done: seen.append((t, O.shape, A.shape)))
    for r in rolls:
        assert r.actions.shape == (23, 4) and r.observations.shape == (24, STATE_DIM)
        assert np.abs(r.actions).max() <= 1.0
        np.testing.assert_array_equal(r.observations[0], s0[rolls.index(r)])
    # one call per step, across the three windows, with the whole rollout so far
    assert [t for t, _, _ in seen] == list(range(23))
    assert seen[-1][1] == (2, 24, STATE_DIM) and seen[-1][2] == (2, 23, 4)
    # a window boundary does not change what came before it
    short = generate_rollouts(model, [items[0].text], s0[:1], [items[0].goal], max_steps=10)[0]
    np.testing.assert_allclose(short.observations, rolls[0].observations[:11], atol=2e-4)
    # the other directions: explanation text, next actions, dynamics
    assert len(explain_rollouts(model, [r.observations for r in rolls], [r.actions for r in rolls],
                                max_new_tokens=3)) == 2
    a = next_actions(model, [items[0].text], [rolls[0].observations[:3]], [rolls[0].actions[:2]])
    assert a.shape == (1, 4)
    nxt = predict_next_states(model, rolls[0].observations[:2], rolls[0].actions[:2])
    assert nxt.shape == (2, STATE_DIM)


def test_ground_cli_on_metaworld_applies_its_defaults(data, tmp_path, capsys):
    lm, tok = tiny_lm()
    folder = tmp_path / "tinylm"
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "run"
    assert main(["ground", "--env", "metaworld", "--data", str(data), "--out", str(out), "--preset",
                 "tiny", "--model", str(folder), "--steps", "2", "--val-fraction", "0", "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["env"] == "metaworld" and cfg["rollout_windows"] is True
    assert cfg["explain_balls"] is False and cfg["max_steps_per_episode"] == 10
    # a CLEVR dataset cannot ground a Meta-World model (and the reverse)
    clevr = tmp_path / "c.npz"
    collect_dataset(episodes=2, seed=0, out=clevr, progress=False)
    capsys.readouterr()
    with pytest.raises(ValueError, match="--env clevr"):
        train_grounding(GroundConfig(**{**PRESETS["tiny"], **ENV.grounding_defaults, "env": "metaworld",
                                        "data": str(clevr)}), tmp_path / "bad", lm=lm, tokenizer=tok,
                        progress=False)


def test_imagine_on_metaworld_checks_each_rollout_against_the_replay(grounded, tmp_path):
    from kalm.imagine.generate import imagine, load_imagined

    model = load_grounded(grounded / "model", *tiny_lm())
    items = ENV.suite_items("easy")[:2]
    ds, vs = imagine(model, items, per_goal=1, seed=7, out=tmp_path / "im", batch_size=2,
                     max_steps=12, explain=True, progress=False)
    assert ds.env == "metaworld" and all(ep.env == "metaworld" for ep in ds.episodes)
    for ep, v in zip(ds.episodes, vs):
        assert ep.actions.shape == (v.steps, 4) and ep.observations.shape == (v.steps + 1, STATE_DIM)
        assert v.transitions == v.steps and 0 <= v.realistic_transitions <= v.transitions
        assert len(v.step_errors) == v.steps  # hand distance to the replay of the same actions
        assert {"floating_steps", "gripper_jump_steps", "start_error"} <= set(v.extra)
        assert v.extra["start_error"] < 1e-5  # s_0 is the seeded reset the replay starts from
        assert v.explanation is not None and v.overlap_states == 0
    ds2, vs2 = load_imagined(tmp_path / "im")
    assert [v.to_dict() for v in vs2] == [v.to_dict() for v in vs]
    summary = json.loads((tmp_path / "im" / "summary.json").read_text())
    assert "hand_step_max" in summary["tolerances"] and summary["categories"]["easy"]["rollouts"] == 2


def test_every_loss_falls_with_continuous_actions():
    from kalm.llm.sequences import explain_sequence
    from kalm.llm.train import build_model

    from .fitting import assert_every_loss_falls

    torch.manual_seed(0)
    lm, tok = tiny_lm()
    model = build_model(GroundConfig(env="metaworld", **ENV.grounding_defaults), lm, tok)
    rng = np.random.default_rng(2)
    obs = np.stack([_state(rng) for _ in range(4)])
    acts = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    model.codec.set_stats(obs.mean(0), obs.std(0) + 0.1, np.full(STATE_DIM, 0.1), np.full(STATE_DIM, 0.2))
    batch = collate([rollout_sequence("push the puck to the goal", obs, acts),
                     dynamics_sequence(obs[0], acts[0], obs[1]),
                     consequence_sequence("push the puck to the goal", obs[0], obs[3]),
                     explain_sequence("push the puck to the goal", obs, acts)], tok, 1)
    assert_every_loss_falls(model, batch)


def test_generation_stops_when_the_goal_holds(grounded, monkeypatch):
    import kalm.envs.metaworld.success as success

    model = load_grounded(grounded / "model", *tiny_lm())
    item = ENV.suite_items("train")[0]
    s0 = ENV.imagine_start(item.goal, 1)[None]
    calls = []

    def holds_at_step_four(task, s):  # the rule holds from the fourth generated state on
        calls.append(task)
        return len(calls) >= 4

    monkeypatch.setattr(success, "task_success", holds_at_step_four)
    r = generate_rollouts(model, [item.text], s0, [item.goal])[0]
    assert r.goal_met and len(r.actions) == 4 and calls == [item.goal.task] * 4
    # without a goal it runs to the horizon it is given, across windows
    r = generate_rollouts(model, [item.text], s0, None, max_steps=13)[0]
    assert not r.goal_met and len(r.actions) == 13


def test_settling_writes_steps_past_the_goal_across_windows_up_to_the_horizon(grounded,
                                                                           monkeypatch):
    import kalm.envs.metaworld.success as success

    model = load_grounded(grounded / "model", *tiny_lm())
    assert model.window == 10
    item = ENV.suite_items("train")[0]
    s0 = ENV.imagine_start(item.goal, 1)[None]
    calls = []

    def holds_from_state_four(task, s):  # one call per generated state: true from the 4th on
        calls.append(task)
        return len(calls) >= 4

    monkeypatch.setattr(success, "task_success", holds_from_state_four)
    plain = generate_rollouts(model, [item.text], s0, [item.goal])[0]
    assert len(plain.actions) == 4
    calls.clear()
    settled = generate_rollouts(model, [item.text], s0, [item.goal], settle=9)[0]
    # 4 steps to the goal, 9 after it: the rollout crosses into the second window
    assert settled.goal_met and len(settled.actions) == 13
    assert len(calls) == 4, "once met, the rule is not asked again: the steps settle"
    assert np.array_equal(settled.actions[:4], plain.actions)
    assert np.array_equal(settled.observations[:5], plain.observations)
    unsettled = generate_rollouts(model, [item.text], s0, None, max_steps=13)[0]
    assert np.array_equal(settled.actions, unsettled.actions), "settling is the LM's own steps"
    calls.clear()
    capped = generate_rollouts(model, [item.text], s0, [item.goal], settle=9, max_steps=6)[0]
    assert capped.goal_met and len(capped.actions) == 6
    calls.clear()
    # met in the second window: it settles on within it

    def holds_from_state_twelve(task, s):
        calls.append(task)
        return len(calls) >= 12

    monkeypatch.setattr(success, "task_success", holds_from_state_twelve)
    late = generate_rollouts(model, [item.text], s0, [item.goal], settle=5)[0]
    assert late.goal_met and len(late.actions) == 17


def test_goal_guided_decoding_with_continuous_actions(grounded, monkeypatch):
    """Each step takes, of the LM's action and K - 1 perturbations of it, the one whose predicted
    next state the environment's progress measure ranks highest; deterministic; implausible
    candidates are never taken while a plausible one exists."""
    import kalm.llm.generate as G
    from kalm.llm.generate import guided_decoding_available

    model = load_grounded(grounded / "model", *tiny_lm())
    assert guided_decoding_available(model)
    item = ENV.suite_items("train")[0]
    s0 = ENV.imagine_start(item.goal, 1)[None]
    # progress: the higher the predicted hand (in mm), the better (a measure the LM knows
    # nothing of)
    monkeypatch.setattr(type(ENV), "goal_progress", lambda self, g, s, s0=None: 1000 * float(s[2]))
    monkeypatch.setattr(type(ENV), "implausible_steps", lambda self, o, n, a: None)
    stats: dict = {}
    greedy = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3)[0]
    guided = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3, guide=8,
                               stats=stats)[0]
    again = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3, guide=8)[0]
    assert np.array_equal(guided.actions, again.actions)
    assert np.array_equal(guided.observations, again.observations)
    assert stats["guided_steps"] == 3 and stats["changed_steps"] >= 1
    assert 1000 * guided.observations[1, 2] >= 1000 * greedy.observations[1, 2] + G.GUIDE_MARGIN
    assert not np.array_equal(guided.actions[0], greedy.actions[0])
    assert np.all(np.abs(guided.actions) <= 1.0)
    # every candidate pushing x harder than 0.8 is implausible (the LM's own action among them):
    # none is taken
    monkeypatch.setattr(type(ENV), "implausible_steps", lambda self, o, n, a: np.asarray(a)[:, 0] > 0.8)
    ruled = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3, guide=16)[0]
    assert greedy.actions[0, 0] > 0.8 and np.all(ruled.actions[:, 0] <= 0.8)


def test_a_history_head_reads_the_last_change_of_the_state():
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    codec = VectorCodec(16, STATE_DIM, 4, codec_hidden=32, slots=ENTITY_SLOTS, history=True)
    assert codec.design()["dynamics_history"] is True
    assert "dynamics_history" not in VectorCodec(16, STATE_DIM, 4, codec_hidden=32).design()
    obs = torch.from_numpy(np.stack([_state(rng), _state(rng)]))
    h, a = torch.randn(2, 16), torch.randn(2, 4).clamp(-1, 1)
    moving = obs.clone()
    moving[:, :3] -= 0.01
    unknown = torch.full_like(obs, float("nan"))
    assert not torch.allclose(codec.next_state(h, obs, a, moving), codec.next_state(h, obs, a, obs))
    torch.testing.assert_close(codec.next_state(h, obs, a), codec.next_state(h, obs, a, unknown))
    # a window's first target is told the state before the window; later ones their own previous
    rs = rollout_sequence("push the puck", np.stack([_state(rng) for _ in range(3)]),
                          rng.uniform(-1, 1, (2, 4)).astype(np.float32), prev=obs[0].numpy())
    lm, tok = tiny_lm()
    b = collate([rs, dynamics_sequence(obs[0].numpy(), a[0].numpy(), obs[1].numpy())], tok)
    assert torch.equal(b.st_prev[0], obs[0]) and torch.equal(b.st_prev[1], b.st_base[0])
    assert torch.isnan(b.st_prev[2]).all()  # a single transition: not known


def test_grounding_with_a_history_head_trains_saves_and_generates(data, tmp_path):
    cfg = GroundConfig(**{**PRESETS["tiny"], **ENV.grounding_defaults, "env": "metaworld",
                          "data": str(data), "steps": 3, "val_fraction": 0.0,
                          "dynamics_history": True})
    out = tmp_path / "hist"
    train_grounding(cfg, out, lm=tiny_lm()[0], tokenizer=tiny_lm()[1], progress=False)
    model = load_grounded(out / "model", *tiny_lm())
    assert model.codec.history
    assert json.loads((out / "model" / "grounded.json").read_text())["dynamics_history"] is True
    item = ENV.suite_items("easy")[0]
    s0 = ENV.imagine_start(item.goal, 3)[None]
    r = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=12)[0]
    assert r.observations.shape == (13, STATE_DIM) and np.isfinite(r.observations).all()


def test_guided_look_ahead_scores_the_state_steps_on(grounded, monkeypatch):
    """With ``guide_horizon`` H the candidates are ranked by the state H steps on (the candidate
    held, the dynamics head iterated): a progress measure that only reads states far from the
    start can steer only with the look-ahead."""
    from kalm.imagine.generate import ImagineConfig

    model = load_grounded(grounded / "model", *tiny_lm())
    item = ENV.suite_items("train")[0]
    s0 = ENV.imagine_start(item.goal, 1)[None]
    seen = []

    def progress(self, g, s, s0=None):
        seen.append(np.asarray(s).copy())
        return 1000 * float(s[2])

    monkeypatch.setattr(type(ENV), "goal_progress", progress)
    monkeypatch.setattr(type(ENV), "implausible_steps", lambda self, o, n, a: None)
    one = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=2, guide=4)[0]
    n_one, first_one = len(seen), seen[0]
    seen.clear()
    ahead = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=2, guide=4,
                              guide_horizon=4)[0]
    assert len(seen) == n_one == 2 * 4  # one score per candidate and step either way
    assert one.actions.shape == ahead.actions.shape == (2, 4)
    # the LM's own action is scored at its state 4 steps on, not at its next state
    assert not np.allclose(seen[0], first_one)
    with pytest.raises(ValueError, match="guide_horizon"):
        ImagineConfig(guide_horizon=0).validate()


def test_guided_decoding_with_obstacles_rules_out_paths_through_them(grounded, monkeypatch):
    """``guide_obstacles``: each candidate's predicted path (the current state, its next state
    and the look-ahead's) goes to the environment's ``obstacle_crossings``; a flagged candidate
    is never taken (all flagged: the LM's own action stays), and without the option the
    obstacle rule is never asked."""
    model = load_grounded(grounded / "model", *tiny_lm())
    item = ENV.suite_items("train")[0]
    s0 = ENV.imagine_start(item.goal, 1)[None]
    monkeypatch.setattr(type(ENV), "goal_progress", lambda self, g, s, s0=None: 1000 * float(s[2]))
    monkeypatch.setattr(type(ENV), "implausible_steps", lambda self, o, n, a: None)
    paths = []

    def every_path_crosses(self, goal, states):
        paths.append(np.asarray(states).copy())
        return True

    monkeypatch.setattr(type(ENV), "obstacle_crossings", every_path_crosses)
    greedy = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3)[0]
    free: dict = {}
    generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3, guide=8, guide_horizon=3,
                      stats=free)
    assert not paths and free["changed_steps"] >= 1
    stats: dict = {}
    walled = generate_rollouts(model, [item.text], s0, [item.goal], max_steps=3, guide=8,
                               guide_horizon=3, guide_obstacles=True, stats=stats)[0]
    assert stats["changed_steps"] == 0 and np.array_equal(walled.actions, greedy.actions)
    assert len(paths) == 3 * 8 and all(p.shape == (4, STATE_DIM) for p in paths)
    np.testing.assert_allclose(paths[0][0], s0[0])
    # a real wall: Meta-World's rule on a path through reach-wall's wall, and over it
    from kalm.envs.metaworld.tasks import TaskGoal

    monkeypatch.undo()
    low = np.zeros((2, STATE_DIM))
    low[:, :3] = [[0.1, 0.70, 0.10], [0.1, 0.80, 0.10]]
    high = low.copy()
    high[:, 2] = 0.30
    assert ENV.obstacle_crossings(TaskGoal("reach-wall"), low) is True
    assert ENV.obstacle_crossings(TaskGoal("reach-wall"), high) is False
    assert ENV.obstacle_crossings(TaskGoal("reach"), low) is False


def test_guide_obstacles_needs_the_guide(grounded, tmp_path, capsys):
    from kalm.imagine.generate import ImagineConfig

    with pytest.raises(ValueError, match="guide_obstacles"):
        ImagineConfig(guide_obstacles=True).validate()
    assert ImagineConfig(guide=4, guide_obstacles=True).validate().guide_obstacles
    code = main(["imagine", "--env", "metaworld", "--model", str(grounded / "model"), "--suite",
                 "easy", "--limit", "1", "--out", str(tmp_path / "im"), "--guide-obstacles"])
    assert code != 0 and "--guide K" in capsys.readouterr().err
    assert not (tmp_path / "im").exists()
    # a CLEVR model cannot be grounded with a dynamics context: its codec carries none
    from kalm.llm.train import build_model

    with pytest.raises(ValueError, match="dynamics_context"):
        build_model(GroundConfig(dynamics_context=True), *tiny_lm())
