"""Where the app finds things, and the rule that keeps typed paths inside allowed folders.

The app reads from two places only: the runs folder (``$KALM_RUNS_DIR``, else ``runs/`` in the
repository) and the repository's ``assets/``. A path typed into a form is resolved (symlinks and
``..`` included) and refused unless it lies inside one of them (``confine``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "stage_note",
    "REPO_ROOT",
    "ASSETS_DIR",
    "DEFAULT_DATASET",
    "DEFAULT_GROUNDED",
    "PathNotAllowed",
    "Found",
    "app_runs_root",
    "allowed_roots",
    "confine",
    "display_path",
    "find_datasets",
    "find_grounded_models",
    "find_imagined_sets",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS_DIR = REPO_ROOT / "assets"
DEFAULT_DATASET = ASSETS_DIR / "data" / "relation4k.npz"
DEFAULT_GROUNDED = ASSETS_DIR / "grounded" / "clevr"
# Folders never searched for datasets: an imagine run's finished batches, a training checkpoint.
_SKIP_DIRS = {"parts", "checkpoint", ".checkpoint.tmp", ".checkpoint.old", "__pycache__"}
_MAX_DEPTH = 3


class PathNotAllowed(ValueError):
    """A typed path outside the runs folder and ``assets/`` (or an empty one)."""


@dataclass(frozen=True)
class Found:
    """Something found on disk: its path and a label for people."""

    path: Path
    label: str


def app_runs_root() -> Path:
    """The runs folder: ``$KALM_RUNS_DIR``, else ``runs/`` in the repository (as the Home page)."""
    env = os.environ.get("KALM_RUNS_DIR")
    return Path(env) if env else REPO_ROOT / "runs"


def allowed_roots() -> list[Path]:
    """The folders a typed path may point into, resolved."""
    return [app_runs_root().resolve(), ASSETS_DIR.resolve()]


def confine(text: str | os.PathLike) -> Path:
    """The resolved path of ``text``, if it lies inside the runs folder or ``assets/``.

    A relative path is read from the repository root. Raises ``PathNotAllowed`` with a message
    for people otherwise (it does not check that the path exists).
    """
    raw = os.fspath(text).strip()
    if not raw:
        raise PathNotAllowed("type a path first")
    if "\x00" in raw:
        raise PathNotAllowed("a path cannot contain a NUL character")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = REPO_ROOT / p
    resolved = p.resolve()
    roots = allowed_roots()
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        where = " or ".join(f"`{display_path(r)}`" for r in roots)
        raise PathNotAllowed(f"`{raw}` is outside the folders the app may read ({where}); refused")
    return resolved


def display_path(path: Path) -> str:
    """``path`` relative to the repository or the runs folder when inside them, else as is."""
    path = Path(path)
    runs = app_runs_root()
    for base, prefix in ((runs, "runs"), (REPO_ROOT, "")):
        try:
            rel = path.resolve().relative_to(base.resolve())
        except (ValueError, OSError):
            continue
        return str(Path(prefix) / rel) if prefix else str(rel)
    return str(path)


def _walk(root: Path, depth: int = _MAX_DEPTH):
    """Folders under ``root`` (itself included) down to ``depth``, skipping hidden ones,
    ``_SKIP_DIRS`` and unfinished collections (``*.partial``)."""
    if not root.is_dir():
        return
    stack = [(root, 0)]
    while stack:
        folder, d = stack.pop()
        yield folder
        if d >= depth:
            continue
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            continue
        for c in reversed(children):
            if not (c.name.startswith(".") or c.name in _SKIP_DIRS or c.name.endswith(".partial")):
                stack.append((c, d + 1))


def find_datasets() -> list[Found]:
    """Dataset files (``.npz``): the shipped ones in ``assets/data`` first, then the runs folder's.

    Imagine runs' ``imagined.npz`` are included (they are datasets too); their ``parts/`` are not.
    """
    out: list[Found] = []
    seen: set[Path] = set()
    for root in (ASSETS_DIR / "data", app_runs_root()):
        for folder in _walk(root):
            for f in sorted(folder.glob("*.npz")):
                r = f.resolve()
                if f.name.startswith(".") or r in seen:
                    continue
                seen.add(r)
                out.append(Found(f, display_path(f)))
    return out


def _grounded_label(folder: Path, base: str) -> str:
    try:
        meta = json.loads((folder / "grounded.json").read_text())
    except (OSError, ValueError):
        meta = {}
    step = meta.get("step") if isinstance(meta, dict) else None
    return f"{base} (checkpoint, step {step})" if folder.name == "checkpoint" and step else base


def find_grounded_models() -> list[Found]:
    """Grounded model folders: the shipped ones in ``assets/grounded`` first, then the runs
    folder's (a run's finished ``model/``, else its latest ``checkpoint/``)."""
    out: list[Found] = []
    shipped = ASSETS_DIR / "grounded"
    if shipped.is_dir():
        for f in sorted(p for p in shipped.iterdir() if (p / "grounded.json").is_file()):
            out.append(Found(f, display_path(f)))
    runs = app_runs_root()
    seen: set[Path] = set()
    if runs.is_dir():
        for folder in _walk(runs, depth=2):
            if folder == runs:
                continue
            for model, label in ((folder, None), (folder / "model", display_path(folder)),
                                 (folder / "checkpoint", None)):
                if (model / "grounded.json").is_file():
                    if model.resolve() not in seen:
                        seen.add(model.resolve())
                        out.append(Found(model, label or _grounded_label(
                            model, display_path(folder if model.name == "checkpoint" else model))))
                    break
    return out


def find_imagined_sets() -> list[Found]:
    """Imagine run folders under the runs folder (those with an ``imagined.npz``, a
    ``validity.csv`` or a ``summary.json`` next to a config of stage ``imagine``), newest first,
    then the shipped ones in ``assets/imagined``."""
    shipped_dir = ASSETS_DIR / "imagined"
    shipped = [Found(f, display_path(f)) for f in sorted(shipped_dir.iterdir())
               if (f / "imagined.npz").is_file() or (f / "validity.csv").is_file()] \
        if shipped_dir.is_dir() else []
    runs = app_runs_root()
    out: list[tuple[float, Found]] = []
    for folder in _walk(runs):
        if folder == runs:
            continue
        names = ("imagined.npz", "validity.csv")
        if any((folder / n).is_file() for n in names) or _is_imagine_run(folder):
            try:
                mtime = max((folder / n).stat().st_mtime for n in (*names, "status.json")
                            if (folder / n).exists())
            except ValueError:
                mtime = 0.0
            out.append((mtime, Found(folder, display_path(folder))))
    return [f for _, f in sorted(out, key=lambda t: -t[0])] + shipped


def _is_imagine_run(folder: Path) -> bool:
    try:
        status = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(status, dict) and status.get("stage") == "imagine"


def stage_note(stage: str) -> str | None:
    """A line saying which environments a page's stage is built for, when not all of them are
    (from each environment's ``stages``); None when every registered environment has it."""
    from kalm.envs import env_names, get_env

    envs = [get_env(n) for n in env_names()]
    built = [e.title for e in envs if stage in e.stages]
    others = [e for e in envs if stage not in e.stages]
    if not others:
        return None
    rest = "; ".join(f"{e.title} has {', '.join(e.stages)} so far" for e in others)
    return f"This page works on {', '.join(built)}. {rest} (see the Data and Compare pages)."
