"""The episode format and dataset io: round trips, atomic writes, errors for people, d3rlpy."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kalm.data import episodes as episodes_mod
from kalm.data.episodes import (
    FORMAT_VERSION,
    Dataset,
    DatasetError,
    Episode,
    concat_datasets,
    dataset_summary,
    load_dataset,
    make_meta,
    save_dataset,
    to_d3rlpy,
)


def make_episode(rng: np.random.Generator, length: int, success: bool, **kw) -> Episode:
    terminals = np.zeros(length, dtype=bool)
    if length and success:
        terminals[-1] = True
    return Episode(
        text=kw.pop("text", "Put the red ball to the left of the blue ball"),
        goal=kw.pop("goal", {"kind": "relation", "src": "red", "dst": "blue", "dir": "left"}),
        category=kw.pop("category", "train"),
        seed=kw.pop("seed", int(rng.integers(2**31))),
        observations=rng.uniform(-0.6, 0.7, size=(length + 1, 10)),
        actions=rng.integers(40, size=length),
        rewards=rng.normal(size=length),
        rewards_sparse=terminals.astype(np.float32),
        terminals=terminals,
        success=success,
        **kw,
    )


def make_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    eps = [
        make_episode(rng, 5, True, info={"index": 0, "nested": {"a": [1, 2]}, "np": np.int64(3)}),
        make_episode(rng, 50, False, category="rephrase", text="Ünïcode ✓ text"),
        make_episode(rng, 1, True, goal={"kind": "move", "ball": "green", "dir": "front"},
                     category="easy"),
        make_episode(rng, 0, False, imagined=True, category="hard",
                     goal={"kind": "gather", "center": "green"}),
    ]
    return Dataset(eps, make_meta(kind="test", command="pytest", config={"seed": seed}))


def assert_same(a: Dataset, b: Dataset, meta: bool = True) -> None:
    assert len(a) == len(b)
    if meta:
        assert a.meta == b.meta
    for x, y in zip(a, b):
        assert x.header() == y.header()
        for name in ("observations", "actions", "rewards", "rewards_sparse", "terminals"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


def test_round_trip_is_exact(tmp_path):
    ds = make_dataset()
    path = save_dataset(ds, tmp_path / "d.npz")
    back = load_dataset(path)
    ds.episodes[0].info["np"] = 3  # numpy scalars in info come back as plain JSON numbers
    assert_same(ds, back)
    assert back.meta["format_version"] == FORMAT_VERSION
    assert back[0].observations.dtype == np.float32 and back[0].actions.dtype == np.int64
    assert back[1].text == "Ünïcode ✓ text" and back[3].imagined and back[3].length == 0
    with np.load(path, allow_pickle=False) as npz:  # no pickles anywhere
        assert {"observations", "meta_json", "episodes_json", "episode_offsets"} <= set(npz.files)
        assert npz["observations"].shape == (5 + 50 + 1 + 0 + 4, 10)


def test_empty_dataset_round_trip(tmp_path):
    back = load_dataset(save_dataset(Dataset(), tmp_path / "empty.npz"))
    assert len(back) == 0 and back.meta["format"] == "kalm-episodes"


def test_episode_fields_and_validation():
    rng = np.random.default_rng(1)
    ep = make_episode(rng, 4, False)
    assert ep.length == 4 and ep.timeouts.tolist() == [False, False, False, True]
    ok = make_episode(rng, 4, True)
    assert not ok.timeouts.any() and ok.goal_object().kind == "relation"
    with pytest.raises(DatasetError, match="observations of shape"):
        Episode("t", {"kind": "gather"}, "hard", 0, np.zeros((4, 10)), np.zeros(4), np.zeros(4),
                np.zeros(4), np.zeros(4, bool), False)
    with pytest.raises(DatasetError, match="last step"):
        Episode("t", {"kind": "gather"}, "hard", 0, np.zeros((3, 10)), np.zeros(2), np.zeros(2),
                np.zeros(2), np.array([True, False]), False)
    with pytest.raises(DatasetError, match="actions must lie"):
        Episode("t", {"kind": "gather"}, "hard", 0, np.zeros((2, 10)), [40], [0.0], [0.0], [False],
                False)


def test_unserialisable_info_is_an_error_and_writes_nothing(tmp_path):
    ds = make_dataset()
    ds.episodes[0].info["bad"] = object()
    with pytest.raises(DatasetError, match="JSON"):
        save_dataset(ds, tmp_path / "d.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing_and_keeps_previous(tmp_path, monkeypatch, error):
    target = tmp_path / "d.npz"
    first = make_dataset(0)
    save_dataset(first, target)
    before = target.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise error("disk full")

    monkeypatch.setattr(episodes_mod.np, "savez_compressed", broken_savez)
    with pytest.raises(error):
        save_dataset(make_dataset(1), target)
    with pytest.raises(error):
        save_dataset(make_dataset(1), tmp_path / "new.npz")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["d.npz"]  # no temp files, no new file
    assert target.read_bytes() == before
    assert_same(load_dataset(target), first)


def test_truncated_file_is_a_dataset_error(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "d.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"d\.npz.*(truncated|corrupt).*python -m kalm collect"):
        load_dataset(path)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage"])
def test_garbage_file_is_a_dataset_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="bad.npz"):
        load_dataset(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "nope.npz")
    with pytest.raises(DatasetError, match="folder"):
        load_dataset(tmp_path)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez_compressed(path, **arrays)


def test_missing_key_wrong_version_and_bad_shapes(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "d.npz")
    _rewrite(path, actions=None)
    with pytest.raises(DatasetError, match="not a kalm dataset \\(missing key actions\\).*re-run"):
        load_dataset(path)

    path = save_dataset(make_dataset(), tmp_path / "d.npz")
    meta = dict(make_dataset().meta, format_version=FORMAT_VERSION + 1)
    _rewrite(path, meta_json=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(DatasetError, match="format version .*update kalm"):
        load_dataset(path)

    path = save_dataset(make_dataset(), tmp_path / "d.npz")
    _rewrite(path, observations=np.zeros((3, 10), np.float32))
    with pytest.raises(DatasetError, match="observations has shape"):
        load_dataset(path)

    path = save_dataset(make_dataset(), tmp_path / "d.npz")
    _rewrite(path, episodes_json=np.frombuffer(b"[{]", np.uint8))
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(path)

    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(DatasetError, match="not a kalm dataset"):
        load_dataset(npy)


def test_concat_and_summary():
    a, b = make_dataset(0), make_dataset(1)
    both = concat_datasets([a, b], meta={"kind": "merge"})
    assert len(both) == 8 and both.meta["kind"] == "merge" and len(both.meta["sources"]) == 2
    s = dataset_summary(both)
    assert s["episodes"] == 8 and s["transitions"] == 2 * 56
    assert s["success_rate"] == pytest.approx(0.5)
    assert s["mean_length"] == pytest.approx(14.0)
    assert s["categories"] == {"easy": 2, "hard": 2, "rephrase": 2, "train": 2}
    assert s["goal_kinds"] == {"gather": 2, "move": 2, "relation": 4}
    assert s["imagined"] == 2
    assert dataset_summary(Dataset())["episodes"] == 0


def test_to_d3rlpy_keeps_every_transition():
    ds = make_dataset()
    mdp = to_d3rlpy(ds)
    # the empty episode is skipped; each other episode gives exactly T transitions
    assert len(mdp.episodes) == 3
    assert mdp.transition_count == ds.n_transitions == 56
    assert [e.transition_count for e in mdp.episodes] == [5, 50, 1]
    assert mdp.dataset_info.action_size == 40
    assert mdp.dataset_info.action_space.name == "DISCRETE"
    timed_out = mdp.episodes[1]
    assert not timed_out.terminated and timed_out.observations.shape == (51, 10)
    np.testing.assert_array_equal(timed_out.observations[-1], ds[1].observations[-1])
    assert mdp.episodes[0].terminated
    np.testing.assert_allclose(mdp.episodes[0].rewards.ravel(), ds[0].rewards)

    sparse = to_d3rlpy(ds, reward="sparse")
    np.testing.assert_array_equal(sparse.episodes[0].rewards.ravel(), ds[0].rewards_sparse)

    z = np.arange(len(ds) * 3, dtype=np.float32).reshape(len(ds), 3)
    cond = to_d3rlpy(ds, goal_features=z)
    assert cond.episodes[1].observations.shape == (51, 13)
    np.testing.assert_array_equal(cond.episodes[1].observations[:, 10:], np.tile(z[1], (51, 1)))
    with pytest.raises(ValueError, match="goal_features"):
        to_d3rlpy(ds, goal_features=z[:2])
    with pytest.raises(DatasetError, match="no steps"):
        to_d3rlpy(Dataset())
