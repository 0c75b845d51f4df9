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
