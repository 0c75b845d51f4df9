"""The shipped policies in assets/policies load from their files and act in the harness."""

from pathlib import Path

import pytest

from kalm.evaluate import evaluate
from kalm.goals.suites import suite_items
from kalm.policy import make_policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["kalm", "kalm_filtered", "real_only"])
def test_shipped_policy_loads_and_is_evaluable(name):
    folder = ROOT / "assets" / "policies" / name
    assert (folder / "policy" / "policy.safetensors").is_file()
    policy = make_policy(str(folder))
    res = evaluate(policy, suite_items("easy", 0), episodes=4, seed=0)
    assert res.categories["easy"]["episodes"] == 4
    assert all(0 <= a < 40 for e in res.episodes for a in e.actions)
