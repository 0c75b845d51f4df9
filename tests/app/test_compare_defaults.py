"""The Compare page's first selection: the shipped KALM and real-only policies (CLEVR)."""

from pathlib import Path

from kalm.ui import compare as cmp

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "policies"


def test_the_default_selection_is_the_shipped_kalm_and_real_only_policies(monkeypatch, tmp_path):
    monkeypatch.setenv("KALM_RUNS_DIR", str(tmp_path / "runs"))
    labels = cmp.policy_choices("clevr")
    kalm, real = (str((SHIPPED / n).resolve()) for n in ("kalm", "real_only"))
    assert cmp.default_policies(labels, "clevr") == [kalm, real]
    # without them (or on another environment): the expert and the random policy
    assert cmp.default_policies({"expert": "e", "random": "r"}, "clevr") == ["expert", "random"]
    assert cmp.default_policies(cmp.policy_choices("metaworld"), "metaworld") == ["expert",
                                                                                   "random"]


def test_each_shipped_policy_is_offered_once_not_also_its_policy_subfolder(monkeypatch, tmp_path):
    monkeypatch.setenv("KALM_RUNS_DIR", str(tmp_path / "runs"))
    labels = cmp.policy_choices("clevr")
    shipped = [v for v in labels.values() if v.startswith("trained: assets/policies/")]
    assert "trained: assets/policies/kalm_augment" in shipped
    assert not [v for v in shipped if v.endswith("/policy")], shipped
    mw = cmp.policy_choices("metaworld")
    assert any(v.startswith("trained: assets/policies/metaworld/") for v in mw.values())
    assert not [v for v in mw.values() if v.endswith("/policy")]
