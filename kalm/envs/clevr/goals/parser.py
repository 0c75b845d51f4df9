"""A rule-based reader of goal texts: instruction (or explanation) text -> goal, or None.

The grounded LM's explanations of rollouts are scored with this parser, so it must read every
training phrasing of a relation goal exactly; it also reads the rephrased, easy and hard
phrasings of ``kalm.envs.clevr.goals.language`` (``tests/goals/test_parser.py`` checks them).

How it reads a text:

1. normalise it (lower case, punctuation and hyphens to spaces, one space between words);
2. find the colour mentions (``red``, ``blue ball``, ``blue's``, ``the blue one's``) and the
   direction words (left, right, front, behind / back / rear) in reading order;
3. decide the kind:
   - a "line" word (line, row, left to right, right to left) -> ``line``, the colours in the
     order named (reversed when the text says "right to left"); no colour -> the default order;
   - one colour and a "gather" word (gather, cluster, around, near, ...) -> ``gather``;
   - one colour and one non-relational direction ("to the left", "toward the back") -> ``move``;
   - otherwise the colour and direction mentions are cut into relation clauses of three
     mentions each -> ``relation`` (one clause) or ``all`` (two or three clauses).

Relation clauses may read "SRC dir DST" ("put red left of blue"), "dir DST SRC" ("left of blue,
put red"), "SRC DST's side" ("put red on blue's left side"), "DST's side SRC" ("on blue's left
side, put red") or "DST ... SRC on its side" ("blue should have red on its left"). Anything else
returns None: the parser says it did not understand rather than guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kalm.envs.clevr.goals.spec import COLORS, All, Gather, Goal, GoalSpecError, Line, Move, Relation

__all__ = ["normalize_text", "parse_goal_text", "canonical_goal", "goals_equivalent"]

_COLOR_SYNONYMS: dict[str, str] = {c: c for c in COLORS}
# Nouns that may follow a colour ("the red ball", "the blue one's").
_OBJECT_NOUNS = ("ball", "balls", "sphere", "spheres", "one", "orb", "marble", "object", "block")
_COLOR_RE = re.compile(
    r"\b(?P<color>" + "|".join(_COLOR_SYNONYMS) + r")\b"
    r"(?:\s+(?:" + "|".join(_OBJECT_NOUNS) + r")\b)?"
    r"(?P<poss>'s\b)?"
)
_DIRECTION_WORDS: dict[str, str] = {
    "left": "left",
    "leftward": "left",
    "leftwards": "left",
    "right": "right",
    "rightward": "right",
    "rightwards": "right",
    "front": "front",
    "frontward": "front",
    "frontwards": "front",
    "behind": "behind",
    "back": "behind",
    "rear": "behind",
}
_DIRECTION_RE = re.compile(r"\b(?P<word>" + "|".join(_DIRECTION_WORDS) + r")\b")
# Expressions where "right" is no direction.
_NON_DIRECTION_RE = re.compile(r"\b(right away|right now|all right|that's right)\b")
_LINE_RE = re.compile(r"\b(line|lines|lined|row|rows|left to right|right to left)\b")
_RIGHT_TO_LEFT_RE = re.compile(r"\bright to left\b")
_GATHER_RE = re.compile(
    r"\b(gather|gathered|cluster|clustered|group|grouped|surround|surrounding|around|huddle|"
    r"collect|crowd|converge|assemble|bunch|together|centre|center|centred|centered|middle|"
    r"near|close to|next to|round up|every other|others|other balls|rest of the balls)\b"
)
_ITS_RE = re.compile(r"\bits\b")
# A relational direction ("left of", "behind") needs a reference ball, so it is no `move`.
_RELATIONAL_AFTER_RE = re.compile(r"^(?:\s+(?:hand\s+)?side)?\s+of\b")


@dataclass(frozen=True)
class _Mention:
    """A colour ("C") or direction ("D") mention at [start, end) of the normalised text."""

    kind: str
    value: str
    start: int
    end: int
    possessive: bool = False


def normalize_text(text: str) -> str:
    """Lower case, curly quotes straightened, punctuation and hyphens to spaces, single spaces."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"[^a-z0-9' ]+", " ", t)
    t = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", t)  # quotes, not apostrophes inside words
    return re.sub(r"\s+", " ", t).strip()


def _mentions(t: str) -> list[_Mention]:
    found = [
        _Mention("C", _COLOR_SYNONYMS[m.group("color")], m.start(), m.end(), bool(m.group("poss")))
        for m in _COLOR_RE.finditer(t)
    ]
    masked = _NON_DIRECTION_RE.sub(lambda m: " " * len(m.group(0)), t)
    found += [
        _Mention("D", _DIRECTION_WORDS[m.group("word")], m.start(), m.end())
        for m in _DIRECTION_RE.finditer(masked)
    ]
    return sorted(found, key=lambda m: m.start)


def _relation_unit(t: str, a: _Mention, b: _Mention, c: _Mention) -> tuple[str, str, str] | None:
    """Read three consecutive mentions as one relation clause: (src, dst, dir), or None."""
    kinds = a.kind + b.kind + c.kind
    if kinds == "CDC":
        # "on blue's left side, put red" | "put red left of blue"
        return (c.value, a.value, b.value) if a.possessive else (a.value, c.value, b.value)
    if kinds == "CCD":
        if b.possessive:  # "put red on blue's left side"
            return a.value, b.value, c.value
        if _ITS_RE.search(t, b.end, c.start):  # "blue should have red on its left"
            return b.value, a.value, c.value
        return None
    if kinds == "DCC":  # "left of blue, put red"
        return c.value, b.value, a.value
    return None


def _parse_relations(t: str, mentions: list[_Mention]) -> Goal | None:
    if len(mentions) % 3 or not 3 <= len(mentions) <= 9:
        return None
    units = []
    for i in range(0, len(mentions), 3):
        unit = _relation_unit(t, *mentions[i : i + 3])
        if unit is None:
            return None
        units.append(Relation(*unit))
    return units[0] if len(units) == 1 else All(tuple(units))


def _parse_line(t: str, colors: list[str]) -> Goal | None:
    if not colors:
        return Line()
    if len(colors) < 2:
        return None
    if _RIGHT_TO_LEFT_RE.search(t):
        colors = colors[::-1]
    return Line(tuple(colors))


def _parse_single_ball(t: str, color: str | None, directions: list[_Mention]) -> Goal | None:
    if _GATHER_RE.search(t):
        return Gather(color) if color is not None else Gather()
    if color is None or len({d.value for d in directions}) != 1:
        return None
    for d in directions:
        if d.value == "behind" and t[d.start : d.end] == "behind":
            return None  # "behind" is relational ("behind the blue ball")
        if _RELATIONAL_AFTER_RE.match(t[d.end :]):
            return None  # "left of ..." with no second ball
    return Move(color, directions[0].value)


def parse_goal_text(text: str) -> Goal | None:
    """The goal a text means, or None when the text is not understood.

    Robust to case, punctuation, articles and extra spaces. Never raises on a string.
    """
    t = normalize_text(text)
    if not t:
        return None
    mentions = _mentions(t)
    colors = [m.value for m in mentions if m.kind == "C"]
    directions = [m for m in mentions if m.kind == "D"]
    try:
        if _LINE_RE.search(t):
            return _parse_line(t, colors)
        distinct = set(colors)
        if len(distinct) <= 1:
            return _parse_single_ball(t, colors[0] if colors else None, directions)
        return _parse_relations(t, mentions)
    except GoalSpecError:
        # Well-formed words that make no valid goal (a ball related to itself, a repeat).
        return None


def _canonical_relation(goal: Relation) -> Relation:
    """``right`` and ``behind`` relations flipped into ``left`` and ``front`` ones.

    "red right of blue" holds exactly when "blue left of red" holds (same angle cone, same
    distance), so the two are the same goal for scoring.
    """
    flip = {"right": "left", "behind": "front"}
    if goal.dir in flip:
        return Relation(goal.dst, goal.src, flip[goal.dir])
    return goal


def canonical_goal(goal: Goal) -> Goal:
    """A canonical form of ``goal``: equal canonical forms succeed in exactly the same states.

    Relations are flipped to ``left``/``front``; an ``all`` goal's relations are canonicalised,
    de-duplicated and sorted (a single remaining relation is returned as itself).
    """
    if isinstance(goal, Relation):
        return _canonical_relation(goal)
    if isinstance(goal, All):
        subs = sorted(
            {_canonical_relation(g) for g in goal.goals}, key=lambda g: (g.src, g.dst, g.dir)
        )
        return subs[0] if len(subs) == 1 else All(tuple(subs))
    return goal


def goals_equivalent(a: Goal | None, b: Goal | None) -> bool:
    """Whether two goals mean the same thing (see ``canonical_goal``); None matches nothing."""
    if a is None or b is None:
        return False
    return canonical_goal(a) == canonical_goal(b)
