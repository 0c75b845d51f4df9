"""An imagined set's run folder read back for the Validity page.

A folder written by ``python -m kalm imagine ... --out runs/NAME`` holds ``imagined.npz`` (every
rollout, its validity in ``info``), ``validity.csv`` (one row per rollout) and ``summary.json``
(per-category rates and generation speed). ``load_imagined_set`` reads whatever of them is there
and readable: the rollouts' validities come from ``imagined.npz``, else from ``validity.csv``;
``summary.json`` adds the generation figures. What is missing or corrupt is said in ``problems``;
with no readable rollouts at all it raises ``ImaginedSetError`` with a message for people.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from kalm.data.episodes import Dataset, DatasetError, load_dataset
from kalm.imagine.validity import (
    FAILURE_TYPES,
    REALISTIC_TOLERANCE,
    RolloutValidity,
    aggregate,
    validity_rates,
)

__all__ = [
    "FAILURE_LABELS",
    "HISTOGRAMS",
    "RATE_COLUMNS",
    "ImaginedSetError",
    "ImaginedSet",
    "load_imagined_set",
    "category_table",
    "extra_checks_table",
    "filter_rollouts_table",
    "worst_rollouts",
    "imagine_command",
]

# The failure types of kalm.imagine.validity, in words.
FAILURE_LABELS: dict[str, str] = {
    "unmet_goal": "goal unmet",
    "unrealistic_transition": "unrealistic transition",
    "out_of_workbench": "out of workbench",
    "overlap": "overlap",
    "absurd": "absurd state (NaN / huge)",
    "replay_fails": "replay failed",
    "cycle_mismatch": "cycle inconsistent",
}
assert set(FAILURE_LABELS) == set(FAILURE_TYPES)

# (column, title, marker on the x axis or None, marker text) of each histogram.
HISTOGRAMS: tuple[tuple[str, str, float | None, str], ...] = (
    ("dynamics_error_mean", "Mean per-ball error", REALISTIC_TOLERANCE, "tolerance"),
    ("dynamics_error_max", "Max per-ball error", REALISTIC_TOLERANCE, "tolerance"),
    ("realistic_fraction", "Fraction of realistic transitions", None, ""),
    ("steps", "Steps per rollout", None, ""),
    ("replay_final_error", "Replay drift at the end (per ball)", None, ""),
    ("success_step", "Step where the goal is met", None, ""),
    ("out_of_workbench_states", "States out of the workbench", None, ""),
    ("overlap_states", "States with overlapping balls", None, ""),
)
# (key of validity_rates, column title, is a fraction) of the per-category table.
RATE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("rollouts", "rollouts", False),
    ("match_rate", "match", True),
    ("realistic_transition_rate", "realistic transitions", True),
    ("realistic_rollout_rate", "realistic rollouts", True),
    ("out_of_workbench_rate", "out of workbench", True),
    ("overlap_rate", "overlap", True),
    ("absurd_rate", "absurd", True),
    ("replay_success_rate", "replay success", True),
    ("cycle_consistency", "cycle consistent", True),
    ("explanation_true_rate", "explanation true of the rollout", True),
    ("mean_dynamics_error", "mean per-ball error", False),
    ("mean_steps", "mean steps", False),
    ("fully_valid_rate", "fully valid", True),
)


class ImaginedSetError(ValueError):
    """An imagined set that cannot be shown; the message says why and what to do."""


@dataclass
class ImaginedSet:
    """What could be read of one imagine run folder."""

    folder: Path
    table: pd.DataFrame
    """One row per rollout: index, category, text, goal, reset_seed, every validity field,
    ``realistic_fraction``, ``failure_types`` (a list) and ``failures`` (words)."""
    validities: list[RolloutValidity]
    dataset: Dataset | None
    """The rollouts themselves (None when imagined.npz is missing or unreadable: no videos)."""
    summary: dict | None
    problems: list[str] = field(default_factory=list)


def imagine_command(out: str = "runs/imagine_easy") -> str:
    """A CLI command that makes a small imagined set with the shipped model."""
    return (f"python -m kalm imagine --model assets/grounded/clevr --suite easy --limit 4 "
            f"--per-goal 2 --seed 0 --out {out}")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_BOOL_FIELDS = ("goal_met", "replay_success", "cycle_consistent", "explanation_true")
_INT_FIELDS = ("steps", "success_step", "transitions", "realistic_transitions",
               "first_unrealistic_step", "out_of_workbench_states", "overlap_states",
               "absurd_states")
_FLOAT_FIELDS = ("dynamics_error_mean", "dynamics_error_max", "replay_final_error")


def _cell(value: str, kind: str) -> Any:
    if value is None or value == "":
        return None
    if kind == "bool":
        if value in ("True", "False"):
            return value == "True"
        raise ValueError(f"{value!r} is not True or False")
    if kind == "int":
        return int(float(value))
    if kind == "float":
        return float(value)
    return value


def _validity_from_csv_row(row: dict[str, str]) -> RolloutValidity:
    d: dict[str, Any] = {}
    for k in _BOOL_FIELDS:
        d[k] = _cell(row.get(k, ""), "bool")
    for k in _INT_FIELDS:
        d[k] = _cell(row.get(k, ""), "int")
    for k in _FLOAT_FIELDS:
        d[k] = _cell(row.get(k, ""), "float")
    d["explanation"] = row.get("explanation") or None
    raw = row.get("step_errors") or "[]"
    d["step_errors"] = json.loads(raw)
    for k in ("goal_met", "replay_success", "steps", "transitions", "realistic_transitions",
              "out_of_workbench_states", "overlap_states", "absurd_states"):
        if d[k] is None:
            raise ValueError(f"column {k} is empty")
    return RolloutValidity.from_dict(d)


def _read_csv(path: Path) -> tuple[list[dict], list[RolloutValidity]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {"index", "category", "text", "goal", "steps", "goal_met", "replay_success"}
        missing = needed - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"it lacks the column(s) {', '.join(sorted(missing))}")
        metas, vs = [], []
        for n, row in enumerate(reader, start=2):
            try:
                vs.append(_validity_from_csv_row(row))
                metas.append({"index": int(row["index"]), "category": row["category"],
                              "text": row["text"], "goal": json.loads(row["goal"]),
                              "reset_seed": _cell(row.get("reset_seed", ""), "int")})
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"line {n}: {e}") from None
    return metas, vs


def _from_dataset(ds: Dataset) -> tuple[list[dict], list[RolloutValidity]]:
    metas, vs = [], []
    for j, ep in enumerate(ds.episodes):
        v = ep.info.get("validity") if isinstance(ep.info, dict) else None
        if not isinstance(v, dict):
            raise DatasetError(f"episode {j} has no validity record (is this an imagined set?)")
        try:
            vs.append(RolloutValidity.from_dict(v))
        except TypeError as e:
            raise DatasetError(f"episode {j}'s validity record is incomplete ({e})") from None
        metas.append({"index": int(ep.info.get("index", j)), "category": ep.category,
                      "text": ep.text, "goal": ep.goal, "reset_seed": ep.seed})
    return metas, vs


def _rows(metas: Sequence[dict], vs: Sequence[RolloutValidity]) -> pd.DataFrame:
    rows = []
    for m, v in zip(metas, vs):
        d = v.to_dict()
        d.pop("step_errors", None)
        fails = d.pop("failure_types")
        rows.append({
            **m, "goal": json.dumps(m["goal"]), **d,
            "realistic_fraction": (v.realistic_transitions / v.transitions
                                   if v.transitions else math.nan),
            "failure_types": fails,
            "failures": ", ".join(FAILURE_LABELS[f] for f in fails) or "none",
        })
    df = pd.DataFrame(rows)
    for col in ("dynamics_error_mean", "dynamics_error_max", "replay_final_error", "success_step",
                "first_unrealistic_step"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load_imagined_set(folder: str | Path) -> ImaginedSet:
    """Read an imagine run folder (see the module docstring); raises ImaginedSetError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImaginedSetError(f"`{folder}` is not a folder; pick an imagine run folder.")
    problems: list[str] = []
    dataset = None
    metas: list[dict] | None = None
    vs: list[RolloutValidity] | None = None

    npz = folder / "imagined.npz"
    if npz.exists():
        try:
            dataset = load_dataset(npz)
            metas, vs = _from_dataset(dataset)
        except (DatasetError, OSError) as e:
            dataset = None
            problems.append(f"imagined.npz could not be read ({e}); no videos can be shown.")
    else:
        problems.append("imagined.npz is missing; no videos can be shown.")

    csv_path = folder / "validity.csv"
    if vs is None:
        if csv_path.exists():
            try:
                metas, vs = _read_csv(csv_path)
            except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
                problems.append(f"validity.csv could not be read ({e}).")
        else:
            problems.append("validity.csv is missing.")

    summary = None
    sp = folder / "summary.json"
    if sp.exists():
        try:
            summary = json.loads(sp.read_text(encoding="utf-8"))
            if not isinstance(summary, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            summary = None
            problems.append(f"summary.json could not be read ({e}); rates are computed from "
                            "the rollouts instead.")
    elif vs is not None:
        problems.append("summary.json is missing (the run may be unfinished); rates are computed "
                        "from the rollouts.")

    if vs is None or metas is None:
        status = _status_note(folder)
        raise ImaginedSetError(
            f"`{folder.name}` holds no readable imagined rollouts: " + " ".join(problems)
            + status + f" Make an imagined set with `{imagine_command()}`."
        )
    return ImaginedSet(folder, _rows(metas, vs), list(vs), dataset, summary, problems)


def _status_note(folder: Path) -> str:
    try:
        s = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return ""
    if isinstance(s, dict) and s.get("state") in ("running", "stopped", "failed"):
        return f" Its status is {s.get('state')!r} ({s.get('message', '')})."
    return ""


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def category_table(s: ImaginedSet) -> pd.DataFrame:
    """Per-category rates (``kalm.imagine.validity.aggregate``) and an ``all`` row."""
    cats = aggregate(s.validities, s.table["category"].tolist())
    cats["all"] = validity_rates(s.validities)
    rows = []
    for name, rates in cats.items():
        row: dict[str, Any] = {"category": name}
        for key, title, frac in RATE_COLUMNS:
            v = rates.get(key)
            row[title] = (None if v is None else (100.0 * v if frac else v))
        rows.append(row)
    return pd.DataFrame(rows).set_index("category")


# Words for the checks environments add (``RolloutValidity.extra``'s ``NAME_steps``); others
# show their name with spaces.
EXTRA_LABELS = {"floating": "floating object", "moved_absent": "moved while absent",
                "through_wall": "through the wall", "untouched": "moved untouched"}


def extra_checks_table(s: ImaginedSet) -> pd.DataFrame | None:
    """Per goal (its ``task``, else its ``kind``) and in all: rollouts, match and replay %, and
    the % of rollouts flagged by each check the environment adds (``RolloutValidity.extra``'s
    ``NAME_steps`` lists: Meta-World's floating objects, gripper jumps, moves while absent,
    states out of workspace, on the wall tasks paths through the wall, and where the scene has a
    button, handle or lock, such a part moved untouched). A check a goal does
    not report is empty for it. None when no rollout carries such checks (CLEVR, or a set read
    from validity.csv alone)."""
    names: list[str] = []
    for v in s.validities:
        for k, val in (v.extra or {}).items():
            if k.endswith("_steps") and isinstance(val, list) and k[:-6] not in names:
                names.append(k[:-6])
    if not names:
        return None
    groups: dict[str, list[RolloutValidity]] = {}
    for goal, v in zip(s.table["goal"], s.validities):
        try:
            g = json.loads(goal) if isinstance(goal, str) else goal
        except ValueError:
            g = None
        key = str((g or {}).get("task") or (g or {}).get("kind") or "?") if isinstance(g, dict) \
            else "?"
        groups.setdefault(key, []).append(v)
    groups["all"] = list(s.validities)
    rows = []
    for key, vs in groups.items():
        row: dict[str, Any] = {"goal": key, "rollouts": len(vs),
                               "match %": 100.0 * sum(v.goal_met for v in vs) / len(vs),
                               "replay %": 100.0 * sum(v.replay_success for v in vs) / len(vs)}
        for name in names:
            told = [v for v in vs if isinstance((v.extra or {}).get(f"{name}_steps"), list)]
            row[EXTRA_LABELS.get(name, name.replace("_", " ")) + " %"] = (
                100.0 * sum(bool(v.extra[f"{name}_steps"]) for v in told) / len(told)
                if told else None)
        rows.append(row)
    return pd.DataFrame(rows).set_index("goal")


def filter_rollouts_table(table: pd.DataFrame, failures: Iterable[str] = (),
                          categories: Iterable[str] = (), match: str = "any") -> pd.DataFrame:
    """Rows with the chosen failure types (``match``: "any" of them or "all"; none chosen: every
    row) in the chosen categories (none chosen: every category)."""
    failures = list(failures)
    unknown = [f for f in failures if f not in FAILURE_LABELS]
    if unknown:
        raise ValueError(f"unknown failure type {unknown[0]!r}")
    if match not in ("any", "all"):
        raise ValueError("match must be 'any' or 'all'")
    keep = np.ones(len(table), dtype=bool)
    if failures:
        test = any if match == "any" else all
        if len(table):
            keep &= np.array([test(f in ft for f in failures) for ft in table["failure_types"]],
                             dtype=bool)
    cats = set(categories)
    if cats:
        keep &= table["category"].isin(cats).to_numpy()
    return table[keep]


def worst_rollouts(table: pd.DataFrame, k: int = 5, by: str = "dynamics_error_max") -> pd.DataFrame:
    """The ``k`` rows with the largest ``by`` (rollouts that cannot be measured, with absurd
    states, come first: they are worse than any measured one)."""
    if by not in table:
        raise ValueError(f"no column {by!r}")
    key = table[by].astype(float).fillna(np.inf).where(table["absurd_states"] > 0,
                                                       table[by].astype(float))
    order = key.sort_values(ascending=False, na_position="last").index
    return table.loc[order].head(k)


def imagined_set_env(s: ImaginedSet) -> str:
    """The environment an imagined set was imagined in: its dataset's ``meta["env"]`` or its
    episodes' ``env``; without a dataset, Meta-World when its summary's tolerances are
    Meta-World's (``hand_step_max``); else CLEVR-Robot (sets made before environments were
    recorded)."""
    ds = s.dataset
    if ds is not None:
        env = (ds.meta or {}).get("env") if isinstance(getattr(ds, "meta", None), dict) else None
        if not env and ds.episodes:
            env = getattr(ds.episodes[0], "env", None)
        if env:
            return str(env)
    tol = (s.summary or {}).get("tolerances") or {}
    return "metaworld" if "hand_step_max" in tol else "clevr"
