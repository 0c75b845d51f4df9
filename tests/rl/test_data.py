"""Transition tables match d3rlpy's view of to_d3rlpy data; mixed batches keep their ratio;
imagined rollouts are filtered by their validity."""

import numpy as np
import pytest
from d3rlpy.dataset import BasicTransitionPicker

from kalm.data.episodes import Dataset, load_dataset, to_d3rlpy
from kalm.rl.config import parse_filter
from kalm.rl.data import MixedSampler, TransitionTable, filter_imagined, load_imagined_sources
from kalm.rl.embed import make_embedder


def _with_timeout(ds: Dataset) -> Dataset:
    """The dataset plus a copy of its first episode cut before its goal (a timed-out episode)."""
    from kalm.data.episodes import Episode

    ep = ds.episodes[0]
    t = ep.length - 1
    cut = Episode(ep.text, ep.goal, ep.category, ep.seed, ep.observations[: t + 1], ep.actions[:t],
                  ep.rewards[:t], ep.rewards_sparse[:t], np.zeros(t, bool), False)
    return Dataset([cut, *ds.episodes[:6]], ds.meta)


@pytest.mark.parametrize("reward", ["dense", "sparse"])
def test_table_equals_d3rlpy_transitions_of_to_d3rlpy(real_path, reward):
    ds = _with_timeout(load_dataset(real_path))
    assert ds.episodes[0].length >= 1 and not ds.episodes[0].terminals.any()
    emb = make_embedder("hash:8")
    Z = emb.embed([ep.text for ep in ds.episodes])
    mdp = to_d3rlpy(ds, reward=reward, goal_features=Z)
    picker = BasicTransitionPicker()
    want = [picker(e, i) for e in mdp.episodes for i in range(e.transition_count)]
    table = TransitionTable.from_episodes(ds.episodes, range(len(ds)), reward)
    assert len(table) == len(want) == ds.n_transitions
    sampler = MixedSampler(table, None, Z)
    obs = np.concatenate([table.states, Z[table.goal_ids]], axis=1)
    nxt_goal = Z[table.goal_ids] * (1 - table.terminals)[:, None]
    nxt = np.concatenate([table.next_states, nxt_goal], axis=1)
    for k, tr in enumerate(want):
        np.testing.assert_allclose(obs[k], tr.observation)
        np.testing.assert_allclose(nxt[k], tr.next_observation)
        assert table.actions[k] == tr.action[0] and table.next_actions[k] == tr.next_action[0]
        assert table.rewards[k] == pytest.approx(float(tr.reward[0]))
        assert table.terminals[k] == tr.terminal
    b = sampler.sample(16)
    assert b.observations.shape == (16, 18) and b.actions.shape == (16, 1)


@pytest.mark.parametrize("ratio,batch", [(0.5, 64), (0.25, 10), (0.0, 32), (1.0, 8)])
def test_mixed_batches_keep_the_imagined_ratio(real_path, imagined_dir, ratio, batch):
    real = load_dataset(real_path)
    (_, im), = load_imagined_sources([imagined_dir])
    kept, _ = filter_imagined(im.episodes, [])
    texts = list(dict.fromkeys(ep.text for ep in (*real.episodes, *kept)))
    Z = make_embedder("hash:32").embed(texts)
    idx = {t: i for i, t in enumerate(texts)}
    rt = TransitionTable.from_episodes(real.episodes, [idx[e.text] for e in real.episodes])
    it = TransitionTable.from_episodes(kept, [idx[e.text] for e in kept])
    im_goals = {idx[e.text] for e in kept}
    im_rows = {tuple(np.round(Z[g], 6)) for g in im_goals}
    s = MixedSampler(rt, it, Z, ratio, seed=1)
    fracs = []
    for _ in range(400):
        a = s.sample_arrays(batch)
        # the goal half of every observation tells where the row came from
        from_im = np.array([tuple(np.round(o[10:], 6)) in im_rows for o in a["observations"]])
        np.testing.assert_array_equal(from_im, a["imagined"])
        fracs.append(from_im.mean())
    assert np.mean(fracs) == pytest.approx(ratio, abs=0.02)
    if (ratio * batch) % 1 == 0:
        assert set(fracs) == {ratio}  # an exact count in every batch


def test_filters_select_imagined_rollouts_by_validity(imagined_dir):
    (_, im), = load_imagined_sources([imagined_dir / "imagined.npz"])
    kept, counts = filter_imagined(im.episodes, [])
    assert counts["dropped_nonfinite"] == 1 and len(kept) == 11
    kept, counts = filter_imagined(im.episodes, parse_filter("replay"))
    assert all(ep.info["validity"]["replay_success"] for ep in kept) and len(kept) == 6
    kept, _ = filter_imagined(im.episodes, parse_filter("replay,realistic"))
    assert [ep.info["index"] for ep in kept] == [2, 4, 8, 10]
    assert parse_filter("none") == [] and parse_filter("match") == ["goal_met"]
    with pytest.raises(ValueError):
        parse_filter("bogus")


def test_validity_is_read_from_validity_csv_when_episodes_lack_it(tmp_path, imagined_dir):
    import csv
    import json

    from kalm.data.episodes import save_dataset

    (_, im), = load_imagined_sources([imagined_dir])
    rows = [ep.info.pop("validity") for ep in im.episodes]
    save_dataset(im, tmp_path / "imagined.npz")
    header = ["index", "category", "text", *[k for k in rows[0] if k != "failure_types"]]

    def cell(v):  # as `imagine` writes them
        return "" if v is None else json.dumps(v) if isinstance(v, list) else v

    with open(tmp_path / "validity.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, (ep, v) in enumerate(zip(im.episodes, rows)):
            w.writerow([i, ep.category, ep.text, *[cell(v[k]) for k in header[3:]]])
    (_, again), = load_imagined_sources([tmp_path])
    kept, _ = filter_imagined(again.episodes, ["replay"])
    assert len(kept) == 6
