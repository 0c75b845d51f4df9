"""Run folders: every stage (collect, ground, imagine, train, evaluate) writes one.

A run folder holds ``config.json`` (the typed config), ``status.json`` (state, progress, message;
rewritten atomically so a reader never sees half a file), ``metrics.csv`` (appended rows) and the
stage's artifacts. The CLI, the app and the benchmarks all read runs through this module.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "write_json_atomic", "read_status", "runs_root"]

STATES = ("running", "done", "failed", "stopped")


def runs_root() -> Path:
    """The folder that holds local runs: ``$KALM_RUNS_DIR`` or ``runs/`` in the working directory."""
    return Path(os.environ.get("KALM_RUNS_DIR", "runs"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Swap the finished folder ``tmp`` in as ``final``: the old one is moved aside first and
    removed last, so an interruption leaves either the old or the new folder (or the old one at
    ``.NAME.old`` next to it), never a half-written one."""
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def read_status(folder: str | Path) -> dict | None:
    """The run's status, or None when it has none (or it cannot be read)."""
    p = Path(folder) / "status.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


class RunDir:
    """One run's folder. ``stage`` names what made it (ground, imagine, train, ...)."""

    def __init__(self, path: str | Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage
        self.path.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()

    def save_config(self, config: dict) -> None:
        write_json_atomic(self.path / "config.json", config)

    def status(self, state: str, step: int = 0, total: int = 0, message: str = "", **extra: Any) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        write_json_atomic(self.path / "status.json", {
            "stage": self.stage, "state": state, "step": step, "total": total,
            "message": message, "pid": os.getpid(), "updated": time.time(),
            "elapsed_s": round(time.time() - self._t0, 1), **extra,
        })

    def log_metrics(self, row: dict[str, Any], name: str = "metrics.csv") -> None:
        """Append a row; the header is the first row's keys (new keys are ignored)."""
        p = self.path / name
        new = not p.exists()
        with open(p, "a", newline="") as f:
            if new:
                w = csv.DictWriter(f, fieldnames=list(row))
                w.writeheader()
            else:
                with open(p) as r:
                    header = next(csv.reader(r))
                w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
            w.writerow(row)
