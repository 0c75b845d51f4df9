"""Goal -> text: pattern counts, determinism, and train/rephrase disjointness."""

from __future__ import annotations

import numpy as np
import pytest

from kalm.goals.language import (
    ALL_PATTERNS,
    GATHER_TEMPLATES,
    LINE_TEMPLATES,
    REPHRASE_TEMPLATES,
    TRAIN_DIRECTION_PHRASES,
    TRAIN_TEMPLATES,
    all_phrasings,
    describe,
    order_text,
)
from kalm.goals.parser import normalize_text
from kalm.goals.spec import COLORS, DIRECTIONS, All, Gather, Line, Move, Relation
from kalm.goals.suites import relation_configs

MIN_TRAIN_PATTERNS = 15
MIN_REPHRASE_EXPRESSIONS = 40
MIN_PHRASINGS = 20


def test_pattern_counts() -> None:
    assert len(set(TRAIN_TEMPLATES)) >= MIN_TRAIN_PATTERNS
    assert len(set(REPHRASE_TEMPLATES)) >= MIN_REPHRASE_EXPRESSIONS
    assert len(set(LINE_TEMPLATES)) >= MIN_PHRASINGS
    assert len(set(GATHER_TEMPLATES)) >= MIN_PHRASINGS
    assert len(ALL_PATTERNS) >= MIN_PHRASINGS
    for phrases in TRAIN_DIRECTION_PHRASES.values():
        assert len(phrases) >= 2


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_move_has_twenty_phrasings_per_direction(direction: str) -> None:
    texts = all_phrasings(Move("red", direction))
    assert len(set(texts)) >= MIN_PHRASINGS
    assert all("red" in t for t in texts)


def test_relation_phrasings_name_both_balls() -> None:
    for style in ("train", "rephrase"):
        texts = all_phrasings(Relation("purple", "cyan", "front"), style)
        assert len(texts) == len(set(texts))
        assert all("purple" in t.lower() and "cyan" in t.lower() for t in texts)
    rephrased = all_phrasings(Relation("red", "blue", "left"), "rephrase")
    assert len(rephrased) >= MIN_REPHRASE_EXPRESSIONS


def test_train_and_rephrase_texts_never_overlap() -> None:
    train = {normalize_text(t) for g in relation_configs() for t in all_phrasings(g, "train")}
    rephrase = {normalize_text(t) for g in relation_configs() for t in all_phrasings(g, "rephrase")}
    assert len(train) == 80 * len(TRAIN_TEMPLATES) * 3
    assert not train & rephrase


def test_hard_phrasings() -> None:
    default, shuffled = Line(), Line(("cyan", "purple", "green", "blue", "red"))
    for goal in (default, shuffled):
        texts = all_phrasings(goal)
        assert len(set(texts)) >= MIN_PHRASINGS
        ltr, rtl = order_text(goal.order), order_text(goal.order[::-1])
        assert all(ltr in t or rtl in t for t in texts), "a line text must name its order"
    for center in COLORS:
        texts = all_phrasings(Gather(center))
        assert len(set(texts)) >= MIN_PHRASINGS and all(center in t for t in texts)
    two = All((Relation("red", "blue", "left"), Relation("green", "cyan", "behind")))
    three = All(two.goals + (Relation("purple", "red", "front"),))
    for goal in (two, three):
        texts = all_phrasings(goal)
        assert len(set(texts)) >= MIN_PHRASINGS
        assert all(c in t for t in texts for c in ("red", "blue", "green", "cyan"))


def test_describe_is_deterministic_given_rng() -> None:
    goal = Relation("red", "blue", "left")
    assert describe(goal) == all_phrasings(goal)[0]
    a = [describe(goal, np.random.default_rng(3), "rephrase") for _ in range(3)]
    rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
    assert [describe(goal, rng1) for _ in range(10)] == [describe(goal, rng2) for _ in range(10)]
    assert len(set(a)) == 1 and a[0] in all_phrasings(goal, "rephrase")
    rng = np.random.default_rng(0)
    assert len({describe(goal, rng) for _ in range(50)}) > 10


def test_unknown_style_is_refused() -> None:
    with pytest.raises(ValueError, match="train, rephrase"):
        describe(Relation("red", "blue", "left"), style="fancy")
