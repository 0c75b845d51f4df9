"""The Validity page on a tiny imagined set: tables, histograms, filters, worst rollouts, and
missing or corrupt folders."""

import csv
import json

from .conftest import elements, page, run_ok

SET = "runs/imagine-tiny"


def rows(runs_dir):
    return list(csv.DictReader((runs_dir / "imagine-tiny" / "validity.csv").open()))


def test_report_shows_categories_histograms_filters_and_worst_rollouts(runs_dir):
    at = run_ok(page("validity"))
    assert at.title[0].value == "Validity"
    assert at.selectbox(key="val_set").value == SET
    assert not at.error and not at.warning, [w.value for w in at.warning]
    assert any("greedy decoding" in c.value for c in at.caption)  # how the set was decoded
    cats = at.dataframe[0].value
    assert list(cats.index) == ["easy", "rephrase", "all"]
    wanted = {"match", "realistic transitions", "replay success", "cycle consistent"}
    assert wanted <= set(cats.columns)
    assert cats.loc["all", "rollouts"] == 4
    expected_match = 100 * sum(r["goal_met"] == "True" for r in rows(runs_dir)) / 4
    assert abs(cats.loc["all", "match"] - expected_match) < 1e-9
    assert len(elements(at, "plotly_chart")) >= 4
    # every rollout is listed until a failure type is chosen
    assert len(at.dataframe[1].value) == 4
    unmet = sum("unmet_goal" in r["failure_types"] for r in rows(runs_dir))
    at.multiselect(key="val_failures").set_value(["unmet_goal"])
    run_ok(at)
    assert len(at.dataframe[1].value) == unmet
    assert any(c.value == f"{unmet} of 4 rollouts." for c in at.caption)
    at.multiselect(key="val_failures").set_value([])
    at.multiselect(key="val_cats").set_value(["easy"])
    run_ok(at)
    assert set(at.dataframe[1].value["category"]) == {"easy"}


def test_worst_rollouts_are_sorted_and_render_on_demand(runs_dir):
    at = run_ok(page("validity"))
    worst = [e for e in at.expander if e.label.startswith("#")]
    assert len(worst) == 4
    errs = []
    for r in rows(runs_dir):
        e = r["dynamics_error_max"]
        errs.append(float(e) if e else float("inf"))
    shown = [float(e.label.rsplit("error ", 1)[1]) if "error " in e.label else float("inf")
             for e in worst]
    assert shown == sorted(shown, reverse=True)
    assert not elements(at, "video")
    first = at.button(key=at.button[0].key)
    first.click()
    run_ok(at)
    assert len(elements(at, "video")) == 1
    run_ok(at)  # stays rendered
    assert len(elements(at, "video")) == 1


def test_corrupt_imagined_set_gives_an_error_message(runs_dir):
    bad = runs_dir / "imagine-bad"
    bad.mkdir()
    (bad / "imagined.npz").write_bytes(b"\x00garbage")
    (bad / "validity.csv").write_text("no,such\n1,2\n")
    (bad / "summary.json").write_text("{broken")
    at = run_ok(page("validity"))
    at.selectbox(key="val_set").set_value("runs/imagine-bad")
    run_ok(at)
    assert at.error
    msg = at.error[0].value
    assert "no readable imagined rollouts" in msg and "python -m kalm imagine" in msg


def test_damaged_parts_are_warned_about_but_the_rest_is_shown(runs_dir):
    folder = runs_dir / "imagine-tiny"
    (folder / "summary.json").write_text("{not json")
    (folder / "imagined.npz").unlink()  # no videos; the table comes from validity.csv
    at = run_ok(page("validity"))
    assert not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "summary.json could not be read" in warnings and "imagined.npz is missing" in warnings
    assert at.dataframe[0].value.loc["all", "rollouts"] == 4
    assert any("Videos need imagined.npz" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("val_render")]


def test_no_imagined_set_shows_the_cli_command(monkeypatch, tmp_path):
    from kalm.ui import paths

    monkeypatch.setenv("KALM_RUNS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(paths, "ASSETS_DIR", tmp_path / "no-assets")
    at = run_ok(page("validity"))
    assert at.info and "No imagined set" in at.info[0].value
    assert "python -m kalm imagine" in at.code[0].value


def test_typed_folder_outside_allowed_roots_is_refused(runs_dir, tmp_path):
    at = run_ok(page("validity"))
    at.selectbox(key="val_set").set_value("Other folder…")
    run_ok(at)
    at.text_input(key="val_path").set_value(str(tmp_path))
    run_ok(at)
    assert at.error and "outside" in at.error[0].value
    at.text_input(key="val_path").set_value(str(runs_dir / "imagine-tiny"))
    run_ok(at)
    assert not at.error and at.dataframe[0].value.loc["all", "rollouts"] == 4
    json.loads((runs_dir / "imagine-tiny" / "summary.json").read_text())


def test_a_goal_guided_set_says_so(runs_dir):
    summary = runs_dir / "imagine-tiny" / "summary.json"
    d = json.loads(summary.read_text())
    d["config"]["guide"] = 16
    summary.write_text(json.dumps(d))
    at = run_ok(page("validity"))
    assert any("goal-guided decoding (K = 16)" in c.value for c in at.caption)
