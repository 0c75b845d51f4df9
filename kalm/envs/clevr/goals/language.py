"""Goal language for CLEVR-Robot: from a goal to the instruction texts that mean it.

Every goal kind has its own pool of phrasings. Relation goals have two disjoint pools:

- ``train``: the templates used to phrase the offline data (KALM's "train" category);
- ``rephrase``: expressions never used in training (KALM's "rephrase" category). No sentence that
  the rephrase pool produces can be produced by the train pool (tests check it over all 80
  relation configurations).

``move`` goals (the "easy" category) and ``line``, ``gather`` and ``all`` goals (the "hard"
category) each have their own pools of about 20+ patterns.

``all_phrasings(goal, style)`` lists every text of a goal in a fixed order, and
``describe(goal, rng, style)`` picks one of them: the first without ``rng``, a uniform draw with
one. Directions follow KALM's convention: ``behind = +y``, ``front = -y``, ``left = -x``,
``right = +x``. Texts avoid "forward"/"backward" and compass words, which readers take differently.

Relation templates use the slots ``{src}`` and ``{dst}`` (colour names) and one direction slot:
``{rel}`` (a prepositional phrase such as "to the left of", placed before the reference ball) or
``{side}`` (a noun such as "left-hand side", used as "on blue's left-hand side").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from kalm.envs.clevr.goals.spec import All, Gather, Goal, Line, Move, Relation

__all__ = [
    "STYLES",
    "TRAIN_TEMPLATES",
    "TRAIN_DIRECTION_PHRASES",
    "REPHRASE_TEMPLATES",
    "REPHRASE_DIRECTION_PHRASES",
    "REPHRASE_SIDE_PHRASES",
    "MOVE_TEMPLATES",
    "MOVE_DIRECTION_PHRASES",
    "LINE_TEMPLATES",
    "GATHER_TEMPLATES",
    "ALL_PATTERNS",
    "ALL_CLAUSE_FORMS",
    "AllPattern",
    "describe",
    "all_phrasings",
    "relation_clause",
    "order_text",
]

STYLES: tuple[str, ...] = ("train", "rephrase")

# --------------------------------------------------------------------------------------------
# Relation goals: training phrasings
# --------------------------------------------------------------------------------------------

# Direction phrases of the training pool, placed between the source and the reference ball.
TRAIN_DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("to the left of", "left of", "on the left side of"),
    "right": ("to the right of", "right of", "on the right side of"),
    "front": ("in front of", "to the front of", "at the front of"),
    "behind": ("behind", "in back of", "to the back of"),
}

# Sentence patterns of the training pool; every one names the source ball first.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "Put the {src} ball {rel} the {dst} ball",
    "Move the {src} ball {rel} the {dst} ball",
    "Push the {src} ball {rel} the {dst} ball",
    "Place the {src} sphere {rel} the {dst} sphere",
    "Move the {src} sphere {rel} the {dst} one",
    "Can you move the {src} ball {rel} the {dst} ball?",
    "Can you push the {src} ball {rel} the {dst} ball?",
    "Get the {src} ball {rel} the {dst} ball",
    "Bring the {src} ball {rel} the {dst} ball",
    "Slide the {src} ball {rel} the {dst} ball",
    "Position the {src} sphere {rel} the {dst} sphere",
    "The {src} ball should be {rel} the {dst} ball",
    "I want the {src} ball {rel} the {dst} ball",
    "Please put the {src} ball {rel} the {dst} ball",
    "Push the {src} ball until it is {rel} the {dst} ball",
    "Make the {src} ball go {rel} the {dst} ball",
    "Is there a way to put the {src} ball {rel} the {dst} ball?",
    "Keep pushing the {src} ball until it is {rel} the {dst} ball",
)

# --------------------------------------------------------------------------------------------
# Relation goals: rephrase phrasings (never used in training)
# --------------------------------------------------------------------------------------------

REPHRASE_DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left-hand side of", "to the left-hand side of"),
    "right": ("on the right-hand side of", "to the right-hand side of"),
    "front": ("on the front side of", "to the front side of"),
    "behind": ("at the rear of", "to the rear of"),
}

# Nouns for possessive forms: "on blue's left-hand side", "on its rear".
REPHRASE_SIDE_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left-hand side", "left side"),
    "right": ("right-hand side", "right side"),
    "front": ("front side", "front"),
    "behind": ("rear", "rear side"),
}

REPHRASE_TEMPLATES: tuple[str, ...] = (
    # source, direction, reference
    "Shift the {src} ball so that it sits {rel} the {dst} ball",
    "Roll {src} over {rel} {dst}",
    "Steer the {src} sphere until it rests {rel} the {dst} sphere",
    "Relocate {src} {rel} {dst}",
    "Could you guide the {src} ball {rel} the {dst} ball?",
    "I'd like the {src} ball to end up {rel} the {dst} ball",
    "Let's have the {src} ball {rel} the {dst} ball",
    "The aim: {src} {rel} {dst}",
    "Maneuver the {src} orb {rel} the {dst} orb",
    "Transfer the {src} ball to a spot {rel} the {dst} ball",
    "Drive the {src} ball over {rel} the {dst} ball",
    "Make it so the {src} ball is located {rel} the {dst} ball",
    "Send {src} {rel} {dst}, please",
    "Your task is to get the {src} sphere {rel} the {dst} sphere",
    "See to it that the {src} ball lies {rel} the {dst} ball",
    "Reposition the {src} marble {rel} the {dst} marble",
    "Would you mind shoving the {src} ball {rel} the {dst} ball?",
    "Carry the {src} ball over {rel} the {dst} ball",
    "Try to park {src} {rel} {dst}",
    "Aim to leave the {src} ball resting {rel} the {dst} ball",
    "Tuck the {src} ball in {rel} the {dst} ball",
    "Set the {src} sphere down {rel} the {dst} sphere",
    "End with the {src} ball {rel} the {dst} ball",
    "Work the {src} ball into a position {rel} the {dst} ball",
    # direction, reference, source
    "{rel} the {dst} ball is where the {src} ball should go",
    "{rel} {dst}, that's where {src} belongs",
    "Over {rel} the {dst} ball, place the {src} ball",
    "Find the spot {rel} the {dst} sphere and roll the {src} sphere there",
    # source, reference's side
    "Could you get {src} over on {dst}'s {side}?",
    "Put {src} on {dst}'s {side}",
    "Move the {src} ball over to the {dst} ball's {side}",
    "Slide the {src} one across to the {dst} one's {side}",
    "Nudge {src} until it's at {dst}'s {side}",
    "The {src} ball belongs at the {dst} ball's {side}",
    "Shift {src} to {dst}'s {side}",
    # reference's side, source
    "On the {dst} ball's {side}, set down the {src} ball",
    "{dst}'s {side} is where {src} should end up",
    "Over to {dst}'s {side} with {src}, please",
    # reference has source on its side
    "Make the {dst} ball have the {src} ball on its {side}",
    "Arrange things so the {dst} sphere has the {src} sphere on its {side}",
    "The {dst} ball should have the {src} ball on its {side}",
    "Make sure {dst} has {src} at its {side}",
)

# --------------------------------------------------------------------------------------------
# Move goals (easy): one push of one ball
# --------------------------------------------------------------------------------------------

MOVE_DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("to the left", "leftward", "toward the left"),
    "right": ("to the right", "rightward", "toward the right"),
    "front": ("to the front", "toward the front", "frontward"),
    "behind": ("to the back", "toward the back", "to the rear"),
}

MOVE_TEMPLATES: tuple[str, ...] = (
    "Push the {ball} ball {way}",
    "Nudge the {ball} ball {way}",
    "Move the {ball} sphere {way}",
    "Shift {ball} {way}",
    "Give the {ball} ball a push {way}",
    "Slide the {ball} ball {way}",
    "Roll the {ball} ball {way} once",
    "Can you push the {ball} ball {way}?",
    "Move the {ball} ball a bit {way}",
    "Tap the {ball} ball {way}",
    "One push: the {ball} ball goes {way}",
    "Bump the {ball} one {way}",
)

# --------------------------------------------------------------------------------------------
# Hard goals: line, gather, all
# --------------------------------------------------------------------------------------------

# ``{order}`` lists the balls from left to right, ``{reverse}`` from right to left.
LINE_TEMPLATES: tuple[str, ...] = (
    "Line up the balls from left to right in this order: {order}",
    "Arrange the balls in a horizontal line, left to right: {order}",
    "Put the balls in a row going from left to right: {order}",
    "Form a line of balls ordered {order} from left to right",
    "From left to right, line up {order}",
    "Make a left-to-right row: {order}",
    "Can you line the balls up as {order}, left to right?",
    "Set the balls out in a line with {order} from left to right",
    "Reading from left to right, the balls should be {order}",
    "Build a horizontal row of balls: {order}, from left to right",
    "Order the balls in a line from left to right as follows: {order}",
    "Place {order} in a line, left to right",
    "Line them up, left to right: {order}",
    "Arrange the balls side by side in a line: {order}, from left to right",
    "Make one straight line of balls, left to right: {order}",
    "Put the balls in a line from right to left: {reverse}",
    "From right to left, line the balls up as {reverse}",
    "Arrange the balls in a row so that, from right to left, they read {reverse}",
    "Lay the balls out in a row, left to right: {order}",
    "Sort the balls into a line from left to right: {order}",
    "Align the balls horizontally from left to right: {order}",
    "Create a row of balls with the order {order}, left to right",
)

# ``{center}`` is the colour of the ball the others gather around.
GATHER_TEMPLATES: tuple[str, ...] = (
    "Gather all the balls around the {center} ball",
    "Bring every other ball close to the {center} ball",
    "Cluster the balls around the {center} one",
    "Group the other four balls near the {center} ball",
    "Move all the other balls next to the {center} ball",
    "Collect the balls around the {center} sphere",
    "Make the other balls surround the {center} ball",
    "Huddle all the balls together around {center}",
    "Put every other ball near the {center} ball",
    "Can you gather the rest of the balls around the {center} ball?",
    "Crowd the balls in around the {center} ball",
    "Pull all the other balls in close to {center}",
    "Assemble the balls around the {center} ball",
    "Bunch the balls up around the {center} sphere",
    "Have all the other balls converge on the {center} ball",
    "Form a tight group with the {center} ball at its centre",
    "Gather everything near the {center} ball",
    "Bring the balls together, with the {center} ball in the middle",
    "Keep the {center} ball at the centre and bring the others close to it",
    "Make a cluster centred on the {center} ball",
    "Round up the other balls around the {center} ball",
    "Push all the other balls toward the {center} ball until they are close",
)

# Relation clauses joined inside ``all`` goals: imperative ("put the red ball ...") or
# declarative ("the red ball is ..."), each with a few forms.
ALL_CLAUSE_FORMS: dict[str, tuple[str, ...]] = {
    "imperative": (
        "put the {src} ball {rel} the {dst} ball",
        "move the {src} ball {rel} the {dst} ball",
        "push the {src} ball {rel} the {dst} ball",
        "place the {src} sphere {rel} the {dst} sphere",
    ),
    "declarative": (
        "the {src} ball is {rel} the {dst} ball",
        "the {src} ball sits {rel} the {dst} ball",
        "the {src} sphere ends up {rel} the {dst} sphere",
        "the {src} ball lies {rel} the {dst} ball",
    ),
}


@dataclass(frozen=True)
class AllPattern:
    """A sentence pattern joining 2 or 3 relation clauses (``{r1}``, ``{r2}``, ``{r3}``)."""

    mood: str
    """Clause mood the pattern needs: "imperative" or "declarative" (see ALL_CLAUSE_FORMS)."""
    two: str
    """The pattern for two clauses."""
    three: str
    """The pattern for three clauses."""

    def __post_init__(self) -> None:
        if self.mood not in ALL_CLAUSE_FORMS:
            raise ValueError(
                f"clause mood must be one of {', '.join(ALL_CLAUSE_FORMS)}; got {self.mood!r}"
            )

    def template(self, n: int) -> str:
        """The pattern for ``n`` clauses (2 or 3)."""
        if n == 2:
            return self.two
        if n == 3:
            return self.three
        raise ValueError(f"an 'all' goal joins 2 or 3 relations; got {n}")


ALL_PATTERNS: tuple[AllPattern, ...] = (
    AllPattern("imperative", "{r1} and {r2}", "{r1}, {r2} and {r3}"),
    AllPattern("imperative", "First {r1}, then {r2}", "First {r1}, then {r2}, and finally {r3}"),
    AllPattern(
        "declarative",
        "Make sure that {r1}; also that {r2}",
        "Make sure that {r1}, that {r2} and that {r3}",
    ),
    AllPattern(
        "declarative",
        "Arrange the balls so that {r1} and {r2}",
        "Arrange the balls so that {r1}, {r2} and {r3}",
    ),
    AllPattern("imperative", "{r1}; after that, {r2}", "{r1}; after that, {r2}; lastly, {r3}"),
    AllPattern(
        "imperative",
        "Do two things: {r1}, and {r2}",
        "Do three things: {r1}, {r2}, and {r3}",
    ),
    AllPattern(
        "declarative",
        "I want a scene where {r1} and {r2}",
        "I want a scene where {r1}, {r2} and {r3}",
    ),
    AllPattern("imperative", "{r1}, and also {r2}", "{r1}, {r2}, and also {r3}"),
    AllPattern(
        "declarative",
        "The goal is reached when {r1} and {r2}",
        "The goal is reached when {r1}, {r2} and {r3}",
    ),
    AllPattern("imperative", "Please {r1}, then {r2}", "Please {r1}, then {r2}, then {r3}"),
    AllPattern(
        "declarative",
        "Both conditions must hold: {r1}, and {r2}",
        "All three conditions must hold: {r1}, {r2}, and {r3}",
    ),
    AllPattern("imperative", "{r1}. Next, {r2}", "{r1}. Next, {r2}. Finally, {r3}"),
    AllPattern(
        "declarative",
        "Get to a state in which {r1} and {r2}",
        "Get to a state in which {r1}, {r2} and {r3}",
    ),
    AllPattern(
        "imperative",
        "Begin with this: {r1}. Then {r2}",
        "Begin with this: {r1}. Then {r2}. Then {r3}",
    ),
    AllPattern(
        "declarative",
        "{r1}, and at the same time {r2}",
        "{r1}, {r2}, and at the same time {r3}",
    ),
    AllPattern("imperative", "You need to {r1} and {r2}", "You need to {r1}, {r2} and {r3}"),
    AllPattern("declarative", "At the end, {r1} and {r2}", "At the end, {r1}, {r2} and {r3}"),
    AllPattern("imperative", "Your job: {r1}; {r2}", "Your job: {r1}; {r2}; {r3}"),
    AllPattern(
        "declarative",
        "Finish with a layout where {r1} and {r2}",
        "Finish with a layout where {r1}, {r2} and {r3}",
    ),
    AllPattern(
        "imperative",
        "Two steps. One: {r1}. Two: {r2}",
        "Three steps. One: {r1}. Two: {r2}. Three: {r3}",
    ),
    AllPattern(
        "declarative",
        "It should end up that {r1}, plus {r2}",
        "It should end up that {r1}, {r2}, plus {r3}",
    ),
    AllPattern(
        "imperative",
        "Could you {r1} and then {r2}?",
        "Could you {r1}, then {r2}, and then {r3}?",
    ),
)

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _capitalize_first(text: str) -> str:
    """Upper-case the first character only (``str.capitalize`` would lower the rest)."""
    return text[:1].upper() + text[1:] if text else text


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"phrasing style must be one of {', '.join(STYLES)}; got {style!r}")


def order_text(order: Sequence[str]) -> str:
    """``["red", "blue", "green"]`` -> ``"red, blue and green"``."""
    names = list(order)
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _relation_phrasings(goal: Relation, style: str) -> list[str]:
    texts: list[str] = []
    if style == "train":
        for template in TRAIN_TEMPLATES:
            for rel in TRAIN_DIRECTION_PHRASES[goal.dir]:
                texts.append(template.format(src=goal.src, dst=goal.dst, rel=rel))
    else:
        for template in REPHRASE_TEMPLATES:
            n_variants = len(REPHRASE_DIRECTION_PHRASES[goal.dir])
            for k in range(n_variants):
                texts.append(
                    template.format(
                        src=goal.src,
                        dst=goal.dst,
                        rel=REPHRASE_DIRECTION_PHRASES[goal.dir][k],
                        side=REPHRASE_SIDE_PHRASES[goal.dir][k],
                    )
                )
    return [_capitalize_first(t) for t in texts]


def relation_clause(goal: Relation, mood: str = "imperative", form: int = 0) -> str:
    """A lower-case relation clause for ``all`` sentences.

    E.g. "put the red ball to the left of the blue ball" (imperative) or "the red ball sits left of
    the blue ball" (declarative).

    ``form`` indexes both the clause form and the (training) direction phrase, cyclically.
    """
    forms = ALL_CLAUSE_FORMS[mood]
    rels = TRAIN_DIRECTION_PHRASES[goal.dir]
    return forms[form % len(forms)].format(src=goal.src, dst=goal.dst, rel=rels[form % len(rels)])


def _all_phrasings(goal: All) -> list[str]:
    texts: list[str] = []
    n = len(goal.goals)
    for pattern in ALL_PATTERNS:
        n_forms = len(ALL_CLAUSE_FORMS[pattern.mood])
        for k in range(n_forms):
            clauses = {
                f"r{i + 1}": relation_clause(g, pattern.mood, k + i)
                for i, g in enumerate(goal.goals)
            }
            texts.append(_capitalize_first(pattern.template(n).format(**clauses)))
    return texts


def all_phrasings(goal: Goal, style: str = "train") -> list[str]:
    """Every text of ``goal``, in a fixed order.

    ``style`` ("train" or "rephrase") chooses the pool for relation goals; the other kinds have a
    single pool each and ignore it.
    """
    _check_style(style)
    if isinstance(goal, Relation):
        return _relation_phrasings(goal, style)
    if isinstance(goal, Move):
        return [
            _capitalize_first(t.format(ball=goal.ball, way=way))
            for t in MOVE_TEMPLATES
            for way in MOVE_DIRECTION_PHRASES[goal.dir]
        ]
    if isinstance(goal, Line):
        return [
            _capitalize_first(
                t.format(order=order_text(goal.order), reverse=order_text(goal.order[::-1]))
            )
            for t in LINE_TEMPLATES
        ]
    if isinstance(goal, Gather):
        return [_capitalize_first(t.format(center=goal.center)) for t in GATHER_TEMPLATES]
    if isinstance(goal, All):
        return _all_phrasings(goal)
    raise TypeError(f"not a goal: {goal!r}")


def describe(goal: Goal, rng: np.random.Generator | None = None, style: str = "train") -> str:
    """One instruction text for ``goal``: the first phrasing without ``rng``, else a uniform draw.

    Deterministic given the state of ``rng``.
    """
    texts = all_phrasings(goal, style)
    if rng is None:
        return texts[0]
    return texts[int(rng.integers(len(texts)))]

