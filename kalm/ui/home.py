"""What the Home page shows: the local runs by kind, and the one-click demo's goal.

``local_runs()`` gathers, cheaply enough to run on every visit of Home, the datasets, grounded
models, imagined sets, trained policies and jobs the other pages work with (shipped ones in
``assets/`` included), plus every run folder with its ``status.json``. Rows are plain dicts, ready
for a table. The demo is one rollout of a novel goal (a phrasing of the ``rephrase`` suite, never
seen in training) imagined by the shipped grounded model from a fixed seed.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kalm import jobs
from kalm.ui.paths import (
    ASSETS_DIR,
    DEFAULT_GROUNDED,
    app_runs_root,
    display_path,
    find_datasets,
    find_grounded_models,
    find_imagined_sets,
)

__all__ = [
    "DEMO_MODEL",
    "DEMO_TEXT",
    "DEMO_GOAL",
    "DEMO_CATEGORY",
    "DEMO_SEED",
    "DEMO_MAX_STEPS",
    "LocalRuns",
    "demo_model_problem",
    "find_policies",
    "local_runs",
    "read_status",
    "runs_folder_label",
]

# The demo: rephrase-suite goal 1 (``suite_items("rephrase")[1]``, a phrasing never used in
# training), from the initial state `python -m kalm imagine --suite rephrase --seed 0` gives it
# (``rollout_base_seed(0, 1, 0)``). With the shipped model: 5 steps, goal met, realistic, replay
# succeeds (its explanation names another goal: not cycle consistent).
DEMO_MODEL = DEFAULT_GROUNDED
DEMO_TEXT = "Send red to the left-hand side of blue, please"
DEMO_GOAL = {"kind": "relation", "src": "red", "dst": "blue", "dir": "left"}
DEMO_CATEGORY = "rephrase"
DEMO_SEED = 1817441349
DEMO_MAX_STEPS = 20

# The Compare page's cache of evaluations: not runs of their own.
_CACHE_DIRS = {"compare-cache"}


def demo_model_problem(folder: Path | None = None) -> str | None:
    """Why the demo's grounded model cannot be used (None: it looks complete)."""
    folder = Path(DEMO_MODEL if folder is None else folder)
    if not folder.is_dir():
        return (f"The shipped grounded model is missing: there is no `{display_path(folder)}` "
                "folder.")
    missing = [n for n in ("grounded.json", "config.json") if not (folder / n).is_file()]
    if missing:
        return (f"The grounded model in `{display_path(folder)}` is incomplete (no "
                f"{', '.join(f'`{m}`' for m in missing)}).")
    return None


def read_status(run_dir: Path) -> dict | str | None:
    """The run's status.json as a dict, None when absent, or a message saying why it cannot be
    read."""
    path = Path(run_dir) / "status.json"
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"status.json could not be read ({exc}); the run may still be writing it."
    return status if isinstance(status, dict) else "status.json does not hold a JSON object."


def _state(run_dir: Path) -> str | None:
    status = read_status(run_dir)
    if isinstance(status, dict):
        state = status.get("state") or status.get("status")
        return state if isinstance(state, str) else None
    return "unreadable" if isinstance(status, str) else None


def _json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _modified(path: Path) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    except OSError:
        return ""


def _where(path: Path) -> str:
    try:
        Path(path).resolve().relative_to(ASSETS_DIR.resolve())
        return "shipped"
    except ValueError:
        return "run"


@functools.lru_cache(maxsize=256)
def _npz_counts(path: str, mtime_ns: int, size: int) -> tuple[int | None, int | None]:
    """(episodes, transitions) of a dataset file, reading only its episode lengths."""
    try:
        with np.load(path, allow_pickle=False) as z:
            lengths = z["episode_lengths"]
        return int(len(lengths)), int(np.sum(lengths))
    except Exception:  # noqa: BLE001 - not a kalm dataset, truncated: no counts
        return None, None


def dataset_rows() -> list[dict]:
    rows = []
    for f in find_datasets():
        try:
            st_ = f.path.stat()
        except OSError:
            continue
        episodes, transitions = _npz_counts(str(f.path.resolve()), st_.st_mtime_ns, st_.st_size)
        rows.append({"dataset": f.label, "where": _where(f.path), "episodes": episodes,
                     "transitions": transitions, "MB": round(st_.st_size / 2**20, 2),
                     "modified": _modified(f.path)})
    return rows


def grounded_rows() -> list[dict]:
    rows = []
    for f in find_grounded_models():
        meta = _json(f.path / "grounded.json")
        cfg = _json(f.path / "config.json")
        run = f.path.parent if f.path.name in ("model", "checkpoint") else f.path
        rows.append({"model": f.label, "where": _where(f.path), "base LM": cfg.get("model"),
                     "step": meta.get("step"), "state": _state(run) or "",
                     "modified": _modified(f.path / "grounded.json")})
    return rows


def imagined_rows() -> list[dict]:
    rows = []
    for f in find_imagined_sets():
        overall = _json(f.path / "summary.json").get("overall") or {}

        def pct(key: str, overall=overall):
            v = overall.get(key)
            return None if v is None else round(100 * float(v), 1)

        rows.append({"imagined set": f.label, "state": _state(f.path) or "",
                     "rollouts": overall.get("rollouts"), "match %": pct("match_rate"),
                     "realistic %": pct("realistic_rollout_rate"),
                     "replay %": pct("replay_success_rate"),
                     "fully valid %": pct("fully_valid_rate"),
                     "modified": _modified(f.path)})
    return rows


def _is_policy_folder(d: Path) -> bool:
    return (d / "policy" / "policy.json").is_file() or (d / "policy.json").is_file()


def find_policies() -> list[tuple[Path, str]]:
    """Trained policies as the Compare page lists them: train run folders in the runs folder (one
    or two levels down) and ``assets/policies/*``; (folder, label) pairs."""
    out: list[tuple[Path, str]] = []
    runs = app_runs_root()
    if runs.is_dir():
        for d in sorted(runs.glob("*")) + sorted(runs.glob("*/*")):
            if d.is_dir() and not _CACHE_DIRS.intersection(d.relative_to(runs).parts) \
                    and _is_policy_folder(d) and not _is_policy_folder(d.parent):
                out.append((d, display_path(d)))
    shipped = ASSETS_DIR / "policies"
    if shipped.is_dir():
        for d in sorted(shipped.iterdir()):
            if d.is_dir() and _is_policy_folder(d):
                out.append((d, display_path(d)))
    return out


def policy_rows() -> list[dict]:
    rows = []
    for folder, label in find_policies():
        meta_path = folder / "policy" / "policy.json"
        meta_path = meta_path if meta_path.is_file() else folder / "policy.json"
        meta = _json(meta_path)
        rows.append({"policy": label, "where": _where(folder), "algorithm": meta.get("algo"),
                     "goal embedder": meta.get("embedder"), "step": meta.get("step"),
                     "state": _state(folder) or "", "modified": _modified(meta_path)})
    return rows


def _ago(t: float | None) -> str:
    if not t:
        return ""
    s = max(0.0, time.time() - float(t))
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def job_rows() -> list[dict]:
    rows = []
    for j in jobs.list_jobs(app_runs_root()):
        progress = j.get("progress")
        rows.append({"job": j.get("name"), "kind": j.get("kind"), "state": j.get("state"),
                     "progress %": None if progress is None else round(100 * progress),
                     "started": _ago(j.get("started")), "message": j.get("message") or ""})
    return rows


def _run_folders(runs: Path) -> list[Path]:
    """Run folders: those with a ``status.json`` one or two levels down (``ground-a``,
    ``bench/easy``), and the top-level folders with none inside (a run not started yet); the
    Compare page's cache is left out."""
    out = []
    try:
        top = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in _CACHE_DIRS]
    except OSError:
        return []
    for d in top:
        if (d / "status.json").exists():
            out.append(d)
            continue
        try:
            inner = [c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")
                     and (c / "status.json").exists()]
        except OSError:
            inner = []
        out += inner or [d]
    return out


def run_folder_rows() -> tuple[list[dict], list[str]]:
    """Every run folder (``_run_folders``), newest first, with its status; and the messages about
    status files that could not be read."""
    runs = app_runs_root()

    def mtime(d: Path) -> float:
        for p in (d / "status.json", d):
            try:
                return p.stat().st_mtime
            except OSError:
                continue
        return 0.0

    folders = sorted(_run_folders(runs), key=mtime, reverse=True)
    rows, problems = [], []
    for d in folders:
        name = d.relative_to(runs).as_posix()
        status = read_status(d)
        row = {"run folder": name, "stage": "", "state": "", "step": "", "message": "",
               "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime(d)))}
        if isinstance(status, dict):
            step, total = status.get("step"), status.get("total")
            row.update(stage=str(status.get("stage") or ""),
                       state=str(status.get("state") or status.get("status") or ""),
                       step=f"{step}/{total}" if step is not None and total else
                       ("" if step is None else str(step)),
                       message=str(status.get("message") or ""))
        elif isinstance(status, str):
            row["state"] = "unreadable"
            problems.append(f"`{name}`: {status}")
        rows.append(row)
    return rows, problems


@dataclass
class LocalRuns:
    """What Home lists; every list holds table rows."""

    datasets: list[dict] = field(default_factory=list)
    grounded: list[dict] = field(default_factory=list)
    imagined: list[dict] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)
    folders: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def running_jobs(self) -> int:
        return sum(1 for j in self.jobs if j.get("state") == "running")


def local_runs() -> LocalRuns:
    folders, problems = run_folder_rows()
    return LocalRuns(datasets=dataset_rows(), grounded=grounded_rows(), imagined=imagined_rows(),
                     policies=policy_rows(), jobs=job_rows(), folders=folders, problems=problems)


def runs_folder_label() -> str:
    return os.fspath(app_runs_root())
