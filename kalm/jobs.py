"""Background jobs: a CLI command (``python -m kalm ground|imagine|train|collect|evaluate ...``)
run by a detached worker process, recorded in its run folder.

A job outlives the page that started it: the worker runs in its own session (its own process
group), so reloading the app, closing the tab or restarting the Streamlit server leaves it
running, and any later page finds it again from the files in its run folder:

    job.json     the record: kind, argv (the arguments of ``python -m kalm``), command (for
                 display), pid and pgid of the worker, its start time, state (running, done,
                 failed, stopped), return code, end time. Written atomically.
    job.log      the command's stdout and stderr (progress bars included), appended to by every
                 start of the job, so a resumed job keeps its history.
    .job.lock    created with O_EXCL while a job writes the folder; holds the worker's pid.
                 A lock left by a dead process is stale and cleaned on the next start.
    .job.stop    written by ``stop_job`` so the worker records "stopped" rather than "failed".

The CLI's own files (``status.json``, ``metrics.csv``, ``config.json``, ...) sit beside these;
``job_status`` merges ``status.json`` (step, total, message) into the job's view, and falls back
on the last progress bar in the log for commands that write no status (collect).

Process layout: ``start_job`` spawns ``python -m kalm.jobs _worker RUN`` with
``start_new_session=True`` (so pgid == pid). The worker waits until ``job.json`` names it, runs
the command as a child in the same process group (``python -m kalm.jobs _exec ARGV...``, which
turns SIGTERM into KeyboardInterrupt so that every stage saves its finished work, as on Ctrl+C,
then calls ``kalm.cli.main``), waits for it, and writes the final state. ``stop_job`` sends
SIGTERM to the group, then SIGKILL after a timeout.

Resume: start the same command again in the same folder (``resume_job``). Every stage resumes
when its command is rerun in its folder: ``ground`` from its last checkpoint, ``imagine`` from its
finished batches, ``collect`` from ``OUT.partial/``.

Paths typed by users go through ``safe_run_path``: they must name a folder inside the runs folder
(``runs_dir()``: ``$KALM_RUNS_DIR``, else ``runs/`` in the repository), with no ``..``, no hidden parts and no symlink
leading out of it. This module never imports Streamlit.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kalm.runs import read_status, runs_root, write_json_atomic

__all__ = [
    "JOB_FILE",
    "LOG_FILE",
    "JobError",
    "JobExists",
    "JobRunning",
    "OptionSpec",
    "cli_options",
    "config_defaults",
    "job_status",
    "list_jobs",
    "options_argv",
    "read_metrics",
    "resume_job",
    "runs_dir",
    "safe_run_path",
    "start_job",
    "stop_job",
    "tail_log",
]

JOB_FILE = "job.json"
LOG_FILE = "job.log"
LOCK_FILE = ".job.lock"
STOP_FILE = ".job.stop"
JOB_FILES = (JOB_FILE, LOG_FILE, LOCK_FILE, STOP_FILE)
# An empty lock file younger than this is being written by a starting job: treated as held.
_FRESH_LOCK_S = 10.0
# How long the worker waits for start_job to record it in job.json.
_WORKER_WAIT_S = 60.0
# A process whose start time differs from the recorded one by more than this is another process
# that reused the pid.
_CREATE_TIME_SLACK_S = 2.0
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KIND = re.compile(r"[a-z][a-z0-9_-]*")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Workers started by this process: polled so that finished ones do not linger as zombies.
_CHILDREN: dict[int, subprocess.Popen] = {}


class JobError(ValueError):
    """A job that cannot be started or found; the message says why and what to do."""


class JobRunning(JobError):
    """A live job already writes that run folder."""


class JobExists(JobError):
    """The run folder exists and holds files: starting there needs explicit confirmation."""


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def runs_dir() -> Path:
    """The runs folder, absolute: ``$KALM_RUNS_DIR``, else ``runs/`` in the repository (the
    app's pages use the same; ``kalm.runs.runs_root()`` names it when run from the repository)."""
    if os.environ.get("KALM_RUNS_DIR"):
        return Path(os.path.abspath(runs_root()))
    return REPO_ROOT / "runs"


def safe_run_path(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The absolute path of run folder ``name`` inside the runs folder ``root``; raises JobError.

    ``name`` is relative to ``root`` (``my-run``, ``compare/abc``) or an absolute path inside it.
    Refused: empty names, ``..`` and hidden parts, characters outside ``A-Z a-z 0-9 . _ -``
    (so no spaces or shell syntax), the runs folder itself, and paths that a symlink takes out of
    the runs folder.
    """
    root_abs = runs_dir() if root is None else Path(os.path.abspath(root))
    text = os.fspath(name).strip() if name is not None else ""
    if not text:
        raise JobError("give the run folder a name (letters, digits, '.', '_', '-')")
    if "\x00" in text:
        raise JobError("the run folder name contains a NUL character")
    p = Path(text)
    if p.is_absolute():
        norm = Path(os.path.normpath(p))
        try:
            rel = norm.relative_to(root_abs)
        except ValueError:
            try:
                rel = norm.relative_to(root_abs.resolve())
            except ValueError:
                raise JobError(f"{text} is outside the runs folder {root_abs}") from None
        parts = rel.parts
    else:
        parts = p.parts
    if not parts:
        raise JobError(f"{text} is the runs folder itself; name a folder inside it")
    for part in parts:
        if part == "..":
            raise JobError(f"{text!r}: '..' is not allowed in a run folder name")
        if not _PART.fullmatch(part):
            raise JobError(
                f"{text!r}: each part of a run folder name must start with a letter or digit and "
                "use only letters, digits, '.', '_' and '-'"
            )
    candidate = root_abs.joinpath(*parts)
    real_root = root_abs.resolve()
    real = candidate.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise JobError(f"{text} leads outside the runs folder {root_abs} (through a symlink)")
    return candidate


def _run_name(run_dir: Path, root: Path | None = None) -> str:
    root_abs = runs_dir() if root is None else Path(os.path.abspath(root))
    try:
        return run_dir.relative_to(root_abs).as_posix()
    except ValueError:
        return str(run_dir)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _reap() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _alive(pid: int | None, create_time: float | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie) and, when given, started at ``create_time``."""
    if not pid or pid <= 0:
        return False
    _reap()
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is pinned in requirements.txt
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X")
        except OSError:
            return True
    try:
        p = psutil.Process(pid)
        if p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        if create_time is not None and abs(p.create_time() - create_time) > _CREATE_TIME_SLACK_S:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def _group_alive(pgid: int | None) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``."""
    if not pgid or pgid <= 0:
        return False
    _reap()
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        import psutil

        for p in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(p.info["pid"]) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    return True
            except (ProcessLookupError, PermissionError, OSError):
                continue
        return False
    except ImportError:  # pragma: no cover
        return True


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _read_job(run_dir: Path) -> dict | None:
    return _read_json(run_dir / JOB_FILE)


def _lock_holder(run_dir: Path) -> int | None:
    """The pid holding the folder's lock, or None when the lock is free or stale (then removed)."""
    lock = run_dir / LOCK_FILE
    try:
        text = lock.read_text().strip()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return None
    if not text:
        if age < _FRESH_LOCK_S:
            return -1  # being written by a starting job
        pid = None
    else:
        try:
            info = json.loads(text)
            pid = int(info["pid"]) if isinstance(info, dict) else int(info)
            ctime = info.get("create_time") if isinstance(info, dict) else None
        except (ValueError, KeyError, TypeError):
            pid, ctime = None, None
        if pid is not None and _alive(pid, ctime):
            return pid
    try:
        lock.unlink()  # stale: its process is gone
    except FileNotFoundError:
        pass
    return None


def _acquire_lock(run_dir: Path) -> None:
    lock = run_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(run_dir)
            if holder is not None:
                who = "a starting job" if holder < 0 else f"job pid {holder}"
                raise JobRunning(
                    f"{_run_name(run_dir)} is in use by {who}; wait for it to finish or stop it"
                ) from None
            continue  # stale lock removed: try again
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "create_time": _create_time(os.getpid())}, f)
        return
    raise JobRunning(f"could not lock {_run_name(run_dir)}; another job is starting there")


def _write_lock(run_dir: Path, pid: int, ctime: float | None) -> None:
    write_json_atomic(run_dir / LOCK_FILE, {"pid": pid, "create_time": ctime})


def _folder_has_results(run_dir: Path) -> bool:
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        return True
    return any(p.name not in JOB_FILES for p in run_dir.iterdir())


# --------------------------------------------------------------------------------------------
# Starting, watching, stopping
# --------------------------------------------------------------------------------------------


def start_job(
    kind: str,
    argv: list[str],
    run_dir: str | os.PathLike,
    *,
    allow_existing: bool = False,
    stdout_name: str | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Start ``python -m kalm KIND ARGV...`` as a background job writing ``run_dir``.

    ``argv``: the command's arguments after ``KIND`` (paths in it should be absolute; the worker
    runs in the repository root). ``run_dir``: a folder inside the runs folder (see
    ``safe_run_path``); it must be new or empty unless ``allow_existing`` (the user confirmed,
    or this resumes the same command). ``stdout_name``: keep the command's stdout apart, in
    ``run_dir/stdout_name`` (written when the command succeeds), e.g. ``evaluate --json``'s JSON.
    Returns ``job_status(run_dir)``. Raises JobRunning when a live job writes the folder,
    JobExists when it holds files and ``allow_existing`` is False, JobError for bad input.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise JobError(f"bad job kind {kind!r}")
    argv = [str(a) for a in argv]
    if stdout_name is not None and not _PART.fullmatch(stdout_name):
        raise JobError(f"bad stdout file name {stdout_name!r}")
    run_dir = safe_run_path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise JobError(f"{_run_name(run_dir)} is a file, not a run folder")
    job = _read_job(run_dir)
    if job and _alive(job.get("pid"), job.get("create_time")):
        raise JobRunning(f"{_run_name(run_dir)} is in use by job pid {job['pid']}; "
                         "wait for it to finish or stop it")
    if _folder_has_results(run_dir) and not allow_existing:
        raise JobExists(f"{_run_name(run_dir)} already exists and holds files; choose another "
                        "name, or confirm to run in that folder (its files may be replaced)")
    run_dir.mkdir(parents=True, exist_ok=True)
    _acquire_lock(run_dir)
    try:
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        command = shlex.join(["python", "-m", "kalm", kind, *argv])
        started = time.time()
        log = open(run_dir / LOG_FILE, "a")
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} started: {command}\n")
        log.flush()
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.setdefault("TQDM_MININTERVAL", "1")
        child_env["KALM_RUNS_DIR"] = str(runs_dir())
        pp = child_env.get("PYTHONPATH", "")
        child_env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pp if pp else "")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kalm.jobs", "_worker", str(run_dir)],
                cwd=str(REPO_ROOT), env=child_env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        finally:
            log.close()
    except BaseException:
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        raise
    _CHILDREN[proc.pid] = proc
    ctime = _create_time(proc.pid)
    _write_lock(run_dir, proc.pid, ctime)
    write_json_atomic(run_dir / JOB_FILE, {
        "kind": kind,
        "argv": [kind, *argv],
        "command": command,
        "run_dir": str(run_dir),
        "stdout": stdout_name,
        "pid": proc.pid,
        "pgid": proc.pid,  # start_new_session: the worker leads its own group
        "create_time": ctime,
        "started": started,
        "state": "running",
        "returncode": None,
        "ended": None,
    })
    return job_status(run_dir)


def resume_job(run_dir: str | os.PathLike) -> dict:
    """Start the job recorded in ``run_dir`` again, with the same command (the stage resumes)."""
    run_dir = safe_run_path(run_dir)
    job = _read_job(run_dir)
    if not job or not job.get("argv"):
        raise JobError(f"{_run_name(run_dir)} has no job record to resume")
    argv = list(job["argv"])
    return start_job(argv[0], argv[1:], run_dir, allow_existing=True,
                     stdout_name=job.get("stdout"))


_TQDM = re.compile(r"(\d+)/(\d+) \[")


def _log_progress(run_dir: Path) -> tuple[int, int] | None:
    """(done, total) of the last progress bar in the job's log, or None."""
    text = _read_tail(run_dir / LOG_FILE, 8192)
    found = _TQDM.findall(text)
    if not found:
        return None
    done, total = (int(x) for x in found[-1])
    return (done, total) if total > 0 else None


def job_status(run_dir: str | os.PathLike) -> dict:
    """The job in ``run_dir``: its record, liveness, and the run's progress.

    Keys: everything in ``job.json`` plus ``name`` (relative to the runs folder), ``alive``,
    ``state`` (running, done, failed, stopped; a record that says running while its worker is gone
    is repaired), ``status`` (the CLI's status.json or None), ``step``, ``total``, ``progress``
    (0..1 or None), ``message``, ``metrics`` (path of metrics.csv or None).
    """
    run_dir = Path(os.path.abspath(run_dir))
    job = _read_job(run_dir)
    if job is None:
        raise JobError(f"no job in {_run_name(run_dir)}")
    alive = job.get("state") == "running" and _alive(job.get("pid"), job.get("create_time"))
    if job.get("state") == "running" and not alive:
        # The worker is gone without recording an end (killed, machine restarted).
        stopped = (run_dir / STOP_FILE).exists()
        job.update(state="stopped" if stopped else "failed", ended=job.get("ended") or time.time(),
                   note="the job's worker ended without recording a result")
        try:
            write_json_atomic(run_dir / JOB_FILE, job)
        except OSError:
            pass
    status = read_status(run_dir)
    step = total = None
    message = ""
    if isinstance(status, dict):
        step, total = status.get("step"), status.get("total")
        message = str(status.get("message") or "")
    if not total:
        lp = _log_progress(run_dir)
        if lp:
            step, total = lp
    progress = None
    if isinstance(step, (int, float)) and isinstance(total, (int, float)) and total > 0:
        progress = max(0.0, min(1.0, step / total))
    if job.get("state") == "done":
        progress = 1.0 if progress is None or not total else progress
    metrics = run_dir / "metrics.csv"
    return {
        **job,
        "name": _run_name(run_dir),
        "run_dir": str(run_dir),
        "alive": alive,
        "status": status,
        "step": step,
        "total": total,
        "progress": progress,
        "message": message,
        "metrics": str(metrics) if metrics.is_file() else None,
    }


def list_jobs(root: str | os.PathLike | None = None, depth: int = 2) -> list[dict]:
    """Every job under the runs folder (folders up to ``depth`` levels down), newest first."""
    root = runs_dir() if root is None else Path(os.path.abspath(root))
    if not root.is_dir():
        return []
    found = []
    pattern = "*/" + JOB_FILE
    for level in range(depth):
        for f in root.glob("*/" * level + pattern):
            try:
                found.append(job_status(f.parent))
            except (JobError, OSError):
                continue
    found.sort(key=lambda j: j.get("started") or 0, reverse=True)
    return found


def stop_job(run_dir: str | os.PathLike, timeout: float = 15.0) -> dict:
    """Stop the job in ``run_dir``: SIGTERM to its process group (the stage saves its finished
    work), then SIGKILL when it is still there after ``timeout`` seconds. Returns its status."""
    run_dir = safe_run_path(run_dir)
    job = _read_job(run_dir)
    if job is None:
        raise JobError(f"no job in {_run_name(run_dir)}")
    pid, pgid = job.get("pid"), job.get("pgid") or job.get("pid")
    if job.get("state") != "running" or not _alive(pid, job.get("create_time")):
        return job_status(run_dir)
    (run_dir / STOP_FILE).write_text(str(time.time()))
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + timeout
    while time.time() < deadline and (_alive(pid, job.get("create_time")) or _group_alive(pgid)):
        time.sleep(0.1)
    if _alive(pid, job.get("create_time")) or _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.time() + 5.0
        while time.time() < deadline and (_alive(pid, job.get("create_time")) or _group_alive(pgid)):
            time.sleep(0.1)
    return job_status(run_dir)


def _read_tail(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def tail_log(run_dir: str | os.PathLike, lines: int = 40, max_bytes: int = 65536) -> str:
    """The last ``lines`` lines of the job's log; a progress bar's redraws (``\\r``) show as its
    latest state."""
    text = _read_tail(Path(run_dir) / LOG_FILE, max_bytes)
    out = []
    for line in text.split("\n"):
        if "\r" in line:
            pieces = [p for p in line.split("\r") if p.strip()]
            line = pieces[-1] if pieces else ""
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out[-lines:])


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of the run's ``metrics.csv`` (numbers parsed; blank cells None)."""
    path = Path(run_dir) / "metrics.csv"
    rows: list[dict[str, Any]] = []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                parsed = {}
                for k, v in row.items():
                    if k is None:
                        continue
                    if v is None or v == "":
                        parsed[k] = None
                        continue
                    try:
                        parsed[k] = float(v)
                    except ValueError:
                        parsed[k] = v
                rows.append(parsed)
    except (OSError, csv.Error):
        return rows
    return rows


# --------------------------------------------------------------------------------------------
# Forms: the CLI's options, and argv from their values
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class OptionSpec:
    """One option of a CLI command, as a form shows it."""

    dest: str
    flag: str
    kind: str
    """bool, flag (store_true), int, float, str, list, json, choice"""
    default: Any
    help: str
    required: bool = False
    choices: list[Any] | None = None
    item_type: Any = str
    """Type of list items (``nargs='+'`` options)."""


def _subparser(command: str) -> argparse.ArgumentParser:
    from kalm.cli import build_parser

    parser = build_parser()
    for action in parser._actions:  # noqa: SLF001 - argparse exposes no public accessor
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            if command in action.choices:
                return action.choices[command]
    raise JobError(f"the CLI has no {command!r} command")


def cli_options(command: str, defaults: dict[str, Any] | None = None) -> list[OptionSpec]:
    """The options of ``python -m kalm COMMAND``, in order, with their defaults.

    ``defaults`` overrides the parser's defaults (config options default to None in the parser;
    their real defaults come from the config dataclass, see ``config_defaults``). Positional
    arguments and --help are left out.
    """
    sub = _subparser(command)
    defaults = defaults or {}
    specs = []
    for a in sub._actions:  # noqa: SLF001
        if not a.option_strings or isinstance(a, argparse._HelpAction):  # noqa: SLF001
            continue
        flag = next((s for s in a.option_strings if s.startswith("--") and not s.startswith("--no-")),
                    a.option_strings[0])
        default = defaults.get(a.dest, a.default)
        help_text = (a.help or "").replace("%(default)s", str(default))
        help_text = re.sub(r"\s*\(default: [^)]*\)\s*$", "", help_text)
        if isinstance(a, argparse.BooleanOptionalAction):
            kind = "bool"
            default = bool(default)
        elif isinstance(a, argparse._StoreTrueAction):  # noqa: SLF001
            kind = "flag"
            default = bool(default)
        elif a.choices is not None:
            kind = "choice"
        elif a.nargs in ("+", "*"):
            kind = "list"
        elif a.type is json.loads:
            kind = "json"
        elif a.type is int:
            kind = "int"
        elif a.type is float:
            kind = "float"
        else:
            kind = "str"
        item_type = a.type if a.type in (int, float) else str
        if item_type is str and isinstance(default, list) and default \
                and type(default[0]) in (int, float):
            item_type = type(default[0])  # the parser reads strings; the config holds numbers
        specs.append(OptionSpec(
            dest=a.dest, flag=flag, kind=kind, default=default, help=help_text,
            required=bool(a.required), choices=list(a.choices) if a.choices is not None else None,
            item_type=item_type,
        ))
    return specs


def config_defaults(cls: type, preset: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default of every field of dataclass ``cls``, with ``preset`` applied on top."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    out.update(preset or {})
    return out


def options_argv(specs: list[OptionSpec], values: dict[str, Any],
                 always: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """argv for the options whose value differs from their default (or is named in ``always``).

    Values are those a form gives: bools, numbers, strings, lists, dicts (json options).
    """
    argv: list[str] = []
    for s in specs:
        if s.dest not in values:
            continue
        v = values[s.dest]
        if v is None or (isinstance(v, str) and v == "" and s.kind != "str"):
            continue
        if s.dest not in always and v == s.default:
            continue
        if s.kind == "bool":
            argv.append(s.flag if v else "--no-" + s.flag[2:])
        elif s.kind == "flag":
            if v:
                argv.append(s.flag)
        elif s.kind == "list":
            items = list(v)
            if not items:
                raise JobError(f"{s.flag} needs at least one value")
            argv += [s.flag, *[str(x) for x in items]]
        elif s.kind == "json":
            argv += [s.flag, json.dumps(v, separators=(",", ":"))]
        else:
            argv += [s.flag, str(v)]
    return argv


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------


def _worker(run_dir: Path) -> int:
    """Run the job recorded in ``run_dir`` and record how it ended (the detached process)."""
    stop_requested = []

    def on_signal(signum, frame):  # the group's SIGTERM also reaches the command, which stops
        stop_requested.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    deadline = time.time() + _WORKER_WAIT_S
    job = _read_job(run_dir)
    while not job or job.get("pid") != os.getpid():
        if time.time() > deadline:
            print("kalm.jobs: no job record names this worker; giving up", flush=True)
            return 1
        time.sleep(0.05)
        job = _read_job(run_dir)
    argv = list(job["argv"])
    stdout_name = job.get("stdout")
    out_tmp = run_dir / f".{stdout_name}.partial" if stdout_name else None
    out_f = open(out_tmp, "w") if out_tmp else None
    try:
        child = subprocess.Popen([sys.executable, "-m", "kalm.jobs", "_exec", *argv],
                                 stdin=subprocess.DEVNULL, stdout=out_f or sys.stdout,
                                 stderr=sys.stderr)
        while True:
            try:
                rc = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
    finally:
        if out_f is not None:
            out_f.close()
    stopped = bool(stop_requested) or (run_dir / STOP_FILE).exists()
    if rc == 0:
        state = "done"
        if out_tmp is not None:
            os.replace(out_tmp, run_dir / stdout_name)
    elif stopped or rc == 130:
        state = "stopped"
    else:
        state = "failed"
    print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {state} (return code {rc})", flush=True)
    job = _read_job(run_dir) or job
    job.update(state=state, returncode=rc, ended=time.time())
    write_json_atomic(run_dir / JOB_FILE, job)
    lock = run_dir / LOCK_FILE
    try:
        holder = json.loads(lock.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        holder = None
    if holder in (os.getpid(), None):
        lock.unlink(missing_ok=True)
    return 0


def _exec(argv: list[str]) -> int:
    """Run ``python -m kalm ARGV`` in this process, SIGTERM acting as Ctrl+C (work is saved)."""

    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        from kalm.cli import main

        sys.argv = [str(REPO_ROOT / "kalm" / "__main__.py"), *argv]
        return main(argv)
    except KeyboardInterrupt:  # stopped before the command could handle it (while importing)
        print("interrupted while starting; nothing was done", file=sys.stderr, flush=True)
        return 130


def _main(args: list[str]) -> int:
    if len(args) == 2 and args[0] == "_worker":
        return _worker(Path(args[1]))
    if args and args[0] == "_exec":
        return _exec(args[1:])
    print("usage: python -m kalm.jobs _worker RUN_DIR  (started by kalm.jobs.start_job)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
