"""Meta-World goal language: phrase tables, the rule-based parser, describe and suite_items."""

import numpy as np
import pytest

from kalm.envs.base import GoalItem
from kalm.envs.metaworld.language import (
    NOVEL_PHRASES,
    REPHRASE_PHRASES,
    TRAIN_PHRASES,
    describe,
    parse_goal,
    parse_task,
    suite_items,
)
from kalm.envs.metaworld.tasks import DATA_TASKS, EASY_TASKS, HARD_TASKS, TaskGoal, suite_tasks


def _key(text: str) -> str:
    return " ".join(text.lower().split())


ALL_PHRASES = [
    (task, text)
    for table in (TRAIN_PHRASES, REPHRASE_PHRASES, NOVEL_PHRASES)
    for task, texts in table.items()
    for text in texts
]


def test_tables_cover_the_right_tasks():
    assert set(TRAIN_PHRASES) == set(DATA_TASKS)
    assert set(REPHRASE_PHRASES) == set(DATA_TASKS)
    assert set(NOVEL_PHRASES) == set(EASY_TASKS) | set(HARD_TASKS)


@pytest.mark.parametrize("task", DATA_TASKS)
def test_counts_data_tasks(task):
    train, rephrase = TRAIN_PHRASES[task], REPHRASE_PHRASES[task]
    assert len(train) >= 20
    assert len(rephrase) >= 10
    assert len({_key(t) for t in train}) == len(train), "train phrases must be distinct"
    assert len({_key(t) for t in rephrase}) == len(rephrase), "rephrase phrases must be distinct"


@pytest.mark.parametrize("task", EASY_TASKS + HARD_TASKS)
def test_counts_novel_tasks(task):
    texts = NOVEL_PHRASES[task]
    assert len(texts) >= 10
    assert len({_key(t) for t in texts}) == len(texts)


def test_rephrase_and_novel_disjoint_from_train():
    train = {_key(t) for texts in TRAIN_PHRASES.values() for t in texts}
    rephrase = {_key(t) for texts in REPHRASE_PHRASES.values() for t in texts}
    novel = {_key(t) for texts in NOVEL_PHRASES.values() for t in texts}
    assert not (rephrase & train)
    assert not (novel & train)


def test_wall_and_composite_wordings():
    for task in ("reach-wall", "push-wall", "pick-place-wall", "button-press-wall"):
        assert all("wall" in t.lower() or "barrier" in t.lower() or "obstacle" in t.lower()
                   or "partition" in t.lower() for t in NOVEL_PHRASES[task])
    assert any("wall" in t.lower() for t in NOVEL_PHRASES["reach-wall"])


@pytest.mark.parametrize(("task", "text"), ALL_PHRASES)
def test_every_phrase_parses_to_its_task(task, text):
    assert parse_task(text) == task
    assert parse_task(text.upper()) == task
    assert parse_goal(text) == TaskGoal(task)


@pytest.mark.parametrize(
    "text",
    ["sing me a song", "", "   ", "make me a sandwich", "What is the weather like today?",
     "tell me a joke", "open the fridge", "hello there", "go to sleep", "I like coffee"],
)
def test_unrelated_texts_parse_to_none(text):
    assert parse_task(text) is None
    assert parse_goal(text) is None


def test_non_string_parses_to_none():
    assert parse_task(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Shut the window", "window-close"),
        ("close the window please", "window-close"),
        ("Open the window", "window-open"),
        ("Press the button behind the wall", "button-press-wall"),
        ("press the button", "button-press"),
        ("Open the door after unlocking it", "locked-door-open"),
        ("Unlock the door", "door-unlock"),
        ("Lock the door", "door-lock"),
        ("Open the door", "door-open"),
        ("shut the door", "door-close"),
        ("open the locked door", "locked-door-open"),
        ("Turn off the tap", "faucet-close"),
        ("turn on the faucet", "faucet-open"),
        ("Make coffee", "make-coffee"),
        ("brew me an espresso", "make-coffee"),
        ("Push the mug under the coffee machine", "coffee-push"),
        ("Press the coffee machine button", "coffee-button"),
        ("push the mug under the machine, then press the button", "make-coffee"),
        ("Push the puck to the goal", "push"),
        ("Lift the puck to the goal", "pick-place"),
        ("put the puck at the goal in the air", "pick-place"),
        ("Push the puck to the goal past the wall", "push-wall"),
        ("Reach the target", "reach"),
        ("move the gripper to the goal", "reach"),
        ("go to the target", "reach"),
        ("Reach the target behind the wall", "reach-wall"),
        ("pick up the hammer and hit the nail", "hammer"),
        ("kick the ball into the goal", "soccer"),
        ("door-open", "door-open"),
        ("pick place wall", "pick-place-wall"),
    ],
)
def test_tricky_texts(text, task):
    assert parse_task(text) == task


def test_describe_first_phrase_without_rng():
    for task in DATA_TASKS:
        assert describe(task) == TRAIN_PHRASES[task][0]
        assert describe(task, "rephrase") == REPHRASE_PHRASES[task][0]
    for task in EASY_TASKS + HARD_TASKS:
        assert describe(task) == NOVEL_PHRASES[task][0]
        assert describe(task, "rephrase") == NOVEL_PHRASES[task][0]


def test_describe_with_rng_draws_from_the_right_table():
    rng = np.random.default_rng(0)
    for task in DATA_TASKS:
        seen = {describe(task, "train", rng) for _ in range(50)}
        assert seen <= set(TRAIN_PHRASES[task]) and len(seen) > 1
        assert describe(task, "rephrase", rng) in REPHRASE_PHRASES[task]
    for task in EASY_TASKS + HARD_TASKS:
        assert describe(task, "train", rng) in NOVEL_PHRASES[task]
        assert describe(task, "rephrase", rng) in NOVEL_PHRASES[task]
    a = [describe("push", "train", np.random.default_rng(3)) for _ in range(3)]
    assert len(set(a)) == 1  # same seed, same draw


def test_describe_errors():
    with pytest.raises(ValueError, match="unknown Meta-World task"):
        describe("juggle")
    with pytest.raises(ValueError, match="unknown style"):
        describe("reach", "poetic")


@pytest.mark.parametrize(
    ("suite", "table"),
    [
        ("train", TRAIN_PHRASES),
        ("rephrase", REPHRASE_PHRASES),
        ("easy", NOVEL_PHRASES),
        ("hard", NOVEL_PHRASES),
    ],
)
def test_suite_items(suite, table):
    items = suite_items(suite)
    tasks = suite_tasks(suite)
    expected = [(task, text) for task in tasks for text in table[task]]
    assert [(it.goal.task, it.text) for it in items] == expected
    for it in items:
        assert isinstance(it, GoalItem)
        assert it.category == suite
        assert isinstance(it.goal, TaskGoal) and it.goal.task in tasks
        assert parse_task(it.text) == it.goal.task
        assert it.to_dict() == {"text": it.text, "goal": {"kind": "task", "task": it.goal.task},
                                "category": suite}
    assert {it.goal.task for it in items} == set(tasks)
    assert [it.text for it in suite_items(suite, seed=5)] == [it.text for it in items]


def test_suite_items_unknown_suite():
    with pytest.raises(ValueError, match="unknown suite"):
        suite_items("medium")
