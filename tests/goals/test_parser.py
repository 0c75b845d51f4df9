"""Text -> goal: exhaustive round trip over training phrasings, coverage of the other pools."""

from __future__ import annotations

import pytest

from kalm.goals.language import TRAIN_TEMPLATES, all_phrasings
from kalm.goals.parser import canonical_goal, goals_equivalent, normalize_text, parse_goal_text
from kalm.goals.spec import COLORS, DIRECTIONS, All, Gather, Line, Move, Relation
from kalm.goals.suites import relation_configs, suite_items


def test_every_training_text_of_every_config_parses_exactly() -> None:
    configs = relation_configs()
    assert len(configs) == 80
    wrong = [
        (text, parse_goal_text(text))
        for goal in configs
        for text in all_phrasings(goal, "train")
        if parse_goal_text(text) != goal
    ]
    assert len(all_phrasings(configs[0], "train")) >= len(TRAIN_TEMPLATES)
    assert not wrong, wrong[:5]


def test_rephrase_texts_parse() -> None:
    total = ok = 0
    for goal in relation_configs():
        for text in all_phrasings(goal, "rephrase"):
            total += 1
            ok += parse_goal_text(text) == goal
    assert ok / total >= 0.95


@pytest.mark.parametrize("ball", COLORS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_move_texts_parse(ball: str, direction: str) -> None:
    goal = Move(ball, direction)
    assert all(parse_goal_text(t) == goal for t in all_phrasings(goal))


def test_hard_suite_parses() -> None:
    items = suite_items("hard")
    assert all(parse_goal_text(i.text) == i.goal for i in items)


@pytest.mark.parametrize(
    ("text", "goal"),
    [
        ("PUT THE RED BALL TO THE LEFT OF THE BLUE BALL!!!", Relation("red", "blue", "left")),
        ("  put   red \t behind   blue  ", Relation("red", "blue", "behind")),
        ("red-ball in-front-of the blue-ball.", Relation("red", "blue", "front")),
        ("Put red on blue\u2019s right-hand side", Relation("red", "blue", "right")),
        ("The red ball moved to the left.", Move("red", "left")),
        ("Line up the balls", Line()),
        ("From right to left: cyan, purple, green, blue, red", Line()),
        ("gather around cyan", Gather("cyan")),
        (
            "put red left of blue, and green behind cyan",
            All((Relation("red", "blue", "left"), Relation("green", "cyan", "behind"))),
        ),
    ],
)
def test_hand_written_texts(text: str, goal: object) -> None:
    assert parse_goal_text(text) == goal


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello there",
        "Put the red ball to the left of the red ball",
        "Push the red ball behind",
        "Push the red ball forward",
        "Put the red ball left of the blue ball and the green ball",
        "Line up red",
    ],
)
def test_unreadable_texts_give_none(text: str) -> None:
    assert parse_goal_text(text) is None


def test_normalize_text() -> None:
    assert normalize_text("  The RED ball's   left-hand side!? ") == "the red ball's left hand side"


def test_goal_equivalence() -> None:
    a, b = Relation("red", "blue", "left"), Relation("blue", "red", "right")
    assert goals_equivalent(a, b) and canonical_goal(b) == a
    assert goals_equivalent(Relation("red", "blue", "behind"), Relation("blue", "red", "front"))
    assert not goals_equivalent(a, Relation("red", "blue", "right"))
    c = Relation("green", "cyan", "front")
    assert goals_equivalent(All((a, c)), All((c, b)))
    assert not goals_equivalent(a, None)
