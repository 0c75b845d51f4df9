"""Suites (train / rephrase / easy / hard) and JSON Lines goals files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kalm.goals.parser import canonical_goal
from kalm.goals.spec import All, Gather, Line, Move, Relation
from kalm.goals.suites import (
    SUITES,
    GoalItem,
    GoalsFileError,
    find_witness,
    read_goals_file,
    relation_configs,
    suite_items,
    write_goals_file,
)

RED_LEFT_OF_BLUE = {"kind": "relation", "src": "red", "dst": "blue", "dir": "left"}


@pytest.fixture(scope="module")
def suites() -> dict[str, list[GoalItem]]:
    return {name: suite_items(name) for name in SUITES}


def test_suite_names() -> None:
    assert SUITES == ("train", "rephrase", "easy", "hard")
    with pytest.raises(ValueError, match="train, rephrase, easy, hard"):
        suite_items("medium")


def test_categories_and_kinds(suites: dict[str, list[GoalItem]]) -> None:
    for name, items in suites.items():
        assert items and all(i.category == name for i in items)
    for name in ("train", "rephrase"):
        goals = {i.goal for i in suites[name]}
        assert goals == set(relation_configs())
    assert {i.goal for i in suites["easy"]} == {
        Move(b, d) for b in ("red", "blue", "green", "purple", "cyan")
        for d in ("left", "right", "front", "behind")
    }
    kinds = {type(i.goal) for i in suites["hard"]}
    assert kinds == {All, Line, Gather}
    assert {len(i.goal.goals) for i in suites["hard"] if isinstance(i.goal, All)} == {2, 3}
    assert any(isinstance(i.goal, Line) and i.goal != Line() for i in suites["hard"])


def test_train_and_rephrase_suites_share_no_text(suites: dict[str, list[GoalItem]]) -> None:
    assert not {i.text for i in suites["train"]} & {i.text for i in suites["rephrase"]}


def test_suites_are_deterministic(suites: dict[str, list[GoalItem]]) -> None:
    for name in SUITES:
        assert suite_items(name, seed=0) == suites[name]
    assert suite_items("rephrase", seed=1) != suites["rephrase"]


def test_hard_conjunctions_are_sensible(suites: dict[str, list[GoalItem]]) -> None:
    for item in suites["hard"]:
        if not isinstance(item.goal, All):
            continue
        pairs = [frozenset((g.src, g.dst)) for g in item.goal.goals]
        assert len(set(pairs)) == len(pairs), "two relations on the same pair of balls"
        assert find_witness(item.goal) is not None, item.text


def test_unsatisfiable_conjunction_has_no_witness() -> None:
    contradiction = All((Relation("red", "blue", "left"), Relation("blue", "red", "left")))
    assert find_witness(contradiction) is None
    ok = All((Relation("red", "blue", "left"), Relation("green", "blue", "right")))
    obs = find_witness(ok)
    assert obs is not None and ok.holds(obs)


def test_goal_item_dict_round_trip() -> None:
    text = "Put the red ball left of the blue ball"
    item = GoalItem(text, Relation("red", "blue", "left"), "rephrase")
    assert item.to_dict() == {
        "text": text,
        "goal": RED_LEFT_OF_BLUE,
        "category": "rephrase",
    }
    assert GoalItem.from_dict(item.to_dict()) == item
    assert GoalItem.from_dict({"text": "x", "goal": RED_LEFT_OF_BLUE}).category == "custom"


def test_write_read_round_trip(tmp_path: Path, suites: dict[str, list[GoalItem]]) -> None:
    items = [*suites["train"][:3], *suites["easy"][:3], *suites["hard"][::20]]
    items.append(GoalItem("Léger: put red to the left of blue", Relation("red", "blue", "left")))
    path = write_goals_file(tmp_path / "sub" / "goals.jsonl", items)
    assert read_goals_file(path) == items


def test_blank_lines_default_category_and_parsed_goal(tmp_path: Path) -> None:
    path = tmp_path / "goals.jsonl"
    path.write_text(
        "\n"
        + json.dumps({"text": "Put red to the left of blue", "goal": RED_LEFT_OF_BLUE})
        + "\n   \n"
        + json.dumps({"text": "Gather the balls around the cyan ball"})
        + "\n"
    )
    items = read_goals_file(path)
    assert [i.category for i in items] == ["custom", "custom"]
    assert items[1].goal == Gather("cyan")


def test_bad_lines_are_all_reported_with_line_numbers(tmp_path: Path) -> None:
    good = json.dumps({"text": "Put the red ball left of the blue ball", "goal": RED_LEFT_OF_BLUE})
    lines = [
        good,  # 1
        "{not json",  # 2
        json.dumps({"goal": RED_LEFT_OF_BLUE}),  # 3: missing text
        json.dumps({"text": "   ", "goal": RED_LEFT_OF_BLUE}),  # 4: empty text
        json.dumps({"text": "x", "goal": {**RED_LEFT_OF_BLUE, "dir": "up"}}),  # 5: bad goal
        "",  # 6: blank, fine
        json.dumps({"text": "mumble", "category": "custom"}),  # 7: no goal, unreadable text
        good,  # 8
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GoalsFileError) as info:
        read_goals_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 2: not valid JSON" in message
    assert "line 3: missing 'text'" in message
    assert "line 4: 'text' is empty" in message
    assert "line 5: bad goal: dir must be one of left, right, front, behind; got 'up'" in message
    assert "line 7:" in message and "could not be understood" in message
    assert "line 1:" not in message and "line 6:" not in message and "line 8:" not in message
    assert isinstance(info.value, ValueError)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(GoalsFileError, match="no such goals file"):
        read_goals_file(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(GoalsFileError, match="holds no goals"):
        read_goals_file(empty)


def test_canonical_relation_configs_cover_forty_distinct_goals() -> None:
    # Each configuration has exactly one mirror image among the 80 (a left b == b right a).
    assert len({canonical_goal(g) for g in relation_configs()}) == 40
