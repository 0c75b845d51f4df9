"""The Train page's logic: the ``python -m kalm ...`` commands its forms build, and the job list.

Each form builds a command (``ground_argv``, ``imagine_argv``, ``train_argv``, after checking the
options as the stage's config would) and hands it to ``kalm.jobs.start_job``, which runs it in a
detached worker: the job goes on when the tab is closed or the app restarts, and the page finds it
again from its run folder (``job.json``, ``status.json``, ``metrics.csv``). Nothing here imports
Streamlit: the page draws the inputs and shows what these functions return.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from kalm import jobs

__all__ = [
    "GROUND_MAIN",
    "HIDDEN",
    "IMAGINE_NUMBERS",
    "MAX_JOBS_SHOWN",
    "OptionInput",
    "STATE_COLOURS",
    "TRAIN_MAIN",
    "algo_names",
    "check_goals_file",
    "check_ground_options",
    "check_train_options",
    "ground_problems",
    "imagine_problems",
    "train_problems",
    "curve_columns",
    "curves_figure",
    "dataset_choices",
    "dataset_env",
    "model_env",
    "with_env",
    "default_name",
    "ground_argv",
    "grounded_choices",
    "holds_files",
    "imagine_argv",
    "imagined_choices",
    "option_input",
    "job_label",
    "job_progress_text",
    "job_summary",
    "jobs_caption",
    "parse_json_option",
    "parse_list_option",
    "resumable",
    "rl_available",
    "split_options",
    "train_argv",
    "write_goals_file",
]

STATE_COLOURS = {"running": "blue", "done": "green", "failed": "red", "stopped": "orange"}
MAX_JOBS_SHOWN = 20

# Options shown at the top of a form; the others go under "More options".
GROUND_MAIN = ("model", "steps", "batch_size", "lr", "max_minutes", "seed")
TRAIN_MAIN = ("algo", "steps", "batch_size", "imagined_ratio", "filter", "reward", "seed",
              "max_minutes", "eval_episodes")
# The imagination form's number inputs: (column, label, ``imagine_argv`` argument, least value,
# default: a number, or the name of the imagine option whose default it takes).
IMAGINE_NUMBERS = (
    (0, "Limit (0 = every goal)", "limit", 0, 0),
    (0, "Seed", "seed", None, "seed"),
    (1, "Rollouts per goal", "per_goal", 1, "per_goal"),
    (1, "Batch size", "batch", 1, "batch_size"),
    (2, "Max steps (0 = the goal's horizon)", "max_steps", 0, 0),
    (2, "Videos per category", "videos", 0, "videos"),
)
# Options a form never shows (set by the form itself, or meaningless for a background job).
HIDDEN = {"out", "quiet", "json", "restart", "overwrite", "data", "real", "imagined", "preset",
          "help"}


# ----------------------------------------------------------------------------------- choices
def dataset_choices() -> list[tuple[str, str]]:
    """(absolute path, label) of every dataset (.npz) the app may read."""
    from kalm.ui import paths

    return [(str(f.path.resolve()), f.label) for f in paths.find_datasets()]


def grounded_choices() -> list[tuple[str, str]]:
    from kalm.ui import paths

    return [(str(f.path.resolve()), f.label) for f in paths.find_grounded_models()]


def imagined_choices() -> list[tuple[str, str]]:
    from kalm.ui import paths

    return [(str(f.path.resolve()), f.label) for f in paths.find_imagined_sets()
            if (f.path / "imagined.npz").is_file()]


def default_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# ----------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class OptionInput:
    """How a form asks for one CLI option: the Streamlit input (``widget``, the name of an ``st``
    function, called with ``kwargs`` and a key) and how its value becomes the option's
    (``parse``; raises ValueError on bad text)."""

    widget: str
    kwargs: dict = field(default_factory=dict)
    parse: Callable[[Any], Any] = lambda v: v


def option_input(spec: jobs.OptionSpec) -> OptionInput:
    """The input of a CLI option, by its kind: a checkbox, a choice, a number, or a text (lists
    separated by spaces, JSON parsed)."""
    label, h = spec.dest.replace("_", " "), spec.help or None
    if spec.kind in ("bool", "flag"):
        return OptionInput("checkbox", dict(label=label, value=bool(spec.default), help=h))
    if spec.kind == "choice":
        opts = list(spec.choices or [])
        idx = opts.index(spec.default) if spec.default in opts else 0
        return OptionInput("selectbox", dict(label=label, options=opts, index=idx, help=h))
    if spec.kind == "int":
        return OptionInput("number_input", dict(label=label, value=int(spec.default or 0), step=1,
                                                help=h), int)
    if spec.kind == "float":
        v = float(spec.default or 0.0)
        return OptionInput("number_input", dict(label=label, value=v, format="%g", help=h,
                                                step=max(abs(v) / 10, 1e-6) if v else 0.1), float)
    if spec.kind == "list":
        return OptionInput("text_input", dict(
            label=label, value=" ".join(str(x) for x in (spec.default or [])),
            help=(h or "") + " (separate values by spaces)"),
            lambda text: parse_list_option(spec, text))
    if spec.kind == "json":
        return OptionInput("text_input", dict(label=label, value=json.dumps(spec.default),
                                              help=(h or "") + " (JSON)"),
                           lambda text: parse_json_option(spec, text))
    return OptionInput("text_input", dict(label=label, help=h,
                                          value="" if spec.default is None else str(spec.default)))


def parse_list_option(spec: jobs.OptionSpec, text: str) -> list:
    """A list option's value from its text (values separated by spaces or commas)."""
    items = [t for t in text.replace(",", " ").split() if t]
    try:
        return [spec.item_type(t) for t in items]
    except ValueError:
        label = spec.dest.replace("_", " ")
        raise ValueError(f"{label}: {text!r} is not a list of {spec.item_type.__name__}") from None


def parse_json_option(spec: jobs.OptionSpec, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{spec.dest.replace('_', ' ')}: not valid JSON ({e})") from None


def split_options(specs: Sequence[jobs.OptionSpec], main: Sequence[str]
                  ) -> tuple[list[jobs.OptionSpec], list[jobs.OptionSpec]]:
    """The options a form shows: the ``main`` ones (in that order), then the rest."""
    shown = [s for s in specs if s.dest not in HIDDEN]
    first = [s for name in main for s in shown if s.dest == name]
    return first, [s for s in shown if s not in first]


# ----------------------------------------------------------------------------------- grounding
def check_ground_options(defaults: dict, values: dict, data: str) -> None:
    """Raise ValueError when the grounding options do not make a valid ``GroundConfig``."""
    from kalm.llm.config import GroundConfig

    try:
        cfg_values = {k: v for k, v in values.items() if k in defaults}
        GroundConfig(**{**defaults, **cfg_values, "data": data}).validate()
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad grounding options: {e}") from None


def ground_problems(errors: list[str], data: str | None, defaults: dict, values: dict
                    ) -> list[str]:
    """What stops a grounding form from starting (empty: nothing): input errors, no dataset,
    options that make no valid config."""
    if errors:
        return list(errors)
    if not data:
        return ["choose a dataset first"]
    try:
        check_ground_options(defaults, values, data)
    except ValueError as e:
        return [str(e)]
    return []


def dataset_env(path: str | Path | None) -> str | None:
    """The environment a dataset's episodes come from (its ``meta["env"]``; CLEVR-Robot for
    files that name none), read without loading the episodes; None when it cannot be read."""
    import numpy as np

    from kalm.data.episodes import DEFAULT_ENV

    if not path:
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta_json"]).decode("utf-8"))
    except (OSError, ValueError, KeyError):
        return None
    env = meta.get("env") if isinstance(meta, dict) else None
    return env if isinstance(env, str) and env else DEFAULT_ENV


def with_env(values: dict, env: str | None) -> dict:
    """``values`` with the environment the chosen data (or model) comes from, unless the form
    names another on purpose: left at its default, ``--env`` follows the data, so a Meta-World
    dataset or model just works."""
    from kalm.data.episodes import DEFAULT_ENV

    if env and values.get("env", DEFAULT_ENV) == DEFAULT_ENV:
        return {**values, "env": env}
    return values


def ground_argv(data: str, run_dir: Path, preset: str, specs: list[jobs.OptionSpec],
                values: dict) -> list[str]:
    return ["--data", data, "--out", str(run_dir), "--preset", preset,
            *jobs.options_argv(specs, with_env(values, dataset_env(data)))]


# ----------------------------------------------------------------------------------- imagination
def check_goals_file(goals_bytes: bytes, env: str | None = None) -> None:
    """Raise ValueError (or OSError) when an uploaded goals file cannot be read (by ``env``'s
    goal language; default CLEVR-Robot's)."""
    import tempfile

    from kalm.envs import get_env

    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as f:
        f.write(goals_bytes)
        f.flush()
        get_env(env).read_goals_file(f.name)


def imagine_problems(model: str | None, use_suites: bool, suites: Sequence[str],
                     goals_bytes: bytes | None) -> list[str]:
    """What stops an imagination form from starting (empty: nothing)."""
    if not model:
        return ["choose a grounded model first"]
    if use_suites:
        return [] if suites else ["choose at least one suite"]
    if goals_bytes is None:
        return ["upload a goals file (JSON Lines), or choose Suites"]
    try:
        check_goals_file(goals_bytes, model_env(model))
    except (ValueError, OSError) as e:
        return [f"goals file: {e}"]
    return []


def holds_files(name: str) -> bool:
    """Whether run folder ``name`` exists and holds files other than a job's own."""
    try:
        d = jobs.safe_run_path(name)
    except jobs.JobError:
        return False
    return d.is_dir() and any(p.name not in jobs.JOB_FILES for p in d.iterdir())


def write_goals_file(run_dir: Path, name: str, goals_bytes: bytes, existing: bool) -> Path:
    """Copy an uploaded goals file into the run folder, named by its content: a rerun with the
    same file resumes, another file never replaces the one an earlier run used."""
    if holds_files(name) and not existing:
        raise jobs.JobExists(f"{name} already exists and holds files")
    if (run_dir / jobs.JOB_FILE).is_file() and \
            jobs.job_status(run_dir).get("state") == "running":
        raise jobs.JobRunning(f"{name} is in use by a running job; stop it first")
    goals = run_dir / f"goals-{hashlib.sha1(goals_bytes).hexdigest()[:10]}.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    if not goals.is_file():
        goals.write_bytes(goals_bytes)
    return goals


def model_env(model: str | Path) -> str:
    """The environment a grounded model folder was grounded on (its ``grounded.json``)."""
    from kalm.ui.imagine import folder_env

    return folder_env(model)


def imagine_argv(model: str, run_dir: Path, *, suites: Sequence[str] = (),
                 goals: Path | None = None, per_goal: int, seed: int, batch: int, limit: int = 0,
                 max_steps: int = 0, videos: int = 0, explain: bool = True,
                 explain_constrained: bool = False) -> list[str]:
    """``python -m kalm imagine`` options: goals from ``goals`` (a file) or else ``suites``; the
    environment is the model's own."""
    src = ["--goals", str(goals)] if goals is not None else ["--suite", ",".join(suites)]
    a = ["--model", model, *src, "--per-goal", str(int(per_goal)), "--seed", str(int(seed)),
         "--out", str(run_dir), "--batch-size", str(int(batch))]
    env = model_env(model)
    from kalm.data.episodes import DEFAULT_ENV

    if env != DEFAULT_ENV:
        a += ["--env", env]
    if limit:
        a += ["--limit", str(int(limit))]
    if max_steps:
        a += ["--max-steps", str(int(max_steps))]
    if videos:
        a += ["--videos", str(int(videos))]
    if not explain:
        a.append("--no-explain")
    elif explain_constrained:
        a.append("--explain-constrained")
    return a


# ----------------------------------------------------------------------------------- offline RL
def rl_available() -> tuple[bool, str]:
    """Whether offline RL can be started from here, and why not."""
    try:
        import kalm.rl.config  # noqa: F401
    except ImportError as e:
        return False, f"the offline RL stage (kalm.rl) is not available in this version ({e})"
    try:
        jobs.cli_options("train")
    except jobs.JobError:
        return False, "the CLI has no `train` command yet in this version"
    return True, ""


def algo_names(algos: dict) -> list[str]:
    """The offline RL algorithms, discrete-action ones first."""
    return sorted(algos, key=lambda k: (not getattr(algos[k], "discrete", True), k))


def check_train_options(defaults: dict, values: dict, real: str | None,
                        imagined: Sequence[str] | None) -> None:
    """Raise ValueError when the options do not make a valid ``TrainConfig``."""
    from kalm.rl import config as rl_config

    try:
        cfg = {**defaults, **{k: v for k, v in values.items() if k in defaults}}
        if real:
            cfg["real"] = real
        if imagined:
            cfg["imagined"] = list(imagined)
        rl_config.TrainConfig(**cfg).validate()
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad training options: {e}") from None


def train_problems(errors: list[str], needs_real: bool, real: str | None, defaults: dict,
                   values: dict, imagined: Sequence[str] | None) -> list[str]:
    """What stops an offline RL form from starting (empty: nothing)."""
    if errors:
        return list(errors)
    if needs_real and not real:
        return ["choose a real dataset first"]
    try:
        check_train_options(defaults, values, real, imagined)
    except ValueError as e:
        return [str(e)]
    return []


def train_argv(run_dir: Path, real: str | None, imagined: Sequence[str] | None,
               specs: list[jobs.OptionSpec], values: dict) -> list[str]:
    a = []
    if real:
        a += ["--real", real]
    if imagined:
        a += ["--imagined", *imagined]
    env = dataset_env(real) if real else None
    return a + ["--out", str(run_dir), *jobs.options_argv(specs, with_env(values, env))]


# ----------------------------------------------------------------------------------- jobs
def curve_columns(rows: list[dict]):
    """(metrics table, x column, numeric columns, the ones shown by default) of ``metrics.csv``
    rows; None when there are no rows."""
    if not rows:
        return None
    import pandas as pd

    df = pd.DataFrame(rows)
    x = "step" if "step" in df.columns else df.columns[0]
    numeric = [c for c in df.columns if c != x and pd.api.types.is_numeric_dtype(df[c])
               and df[c].notna().any()]
    preferred = [c for c in numeric
                 if "loss" in c or "success" in c or "rate" in c or c.startswith("val_")]
    return df, x, numeric, preferred[:8] or numeric[:4]


def curves_figure(df, x: str, chosen: Sequence[str]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for c in chosen:
        d = df[[x, c]].dropna()
        fig.add_trace(go.Scatter(x=d[x], y=d[c], name=c,
                                 mode="lines+markers" if len(d) < 30 else "lines"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=x,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def job_summary(job: dict) -> str:
    """``:green[**done**] · ground · started 2026-01-01 10:00:00 · 60 s · return code 0``."""
    state = job.get("state", "?")
    colour = STATE_COLOURS.get(state, "gray")
    started = job.get("started")
    ended = job.get("ended") or (time.time() if state == "running" else None)
    took = f" · {ended - started:,.0f} s" if started and ended else ""
    when = datetime.fromtimestamp(started).strftime('%Y-%m-%d %H:%M:%S') if started else '?'
    return (f":{colour}[**{state}**] · {job.get('kind', '?')} · started {when}{took}"
            + (f" · return code {job['returncode']}" if job.get("returncode") is not None else ""))


def job_progress_text(job: dict) -> str | None:
    text = f"{job['step']:,.0f} / {job['total']:,.0f}" if job.get("total") else None
    if job.get("message"):
        text = f"{text} · {job['message']}" if text else job["message"]
    return text


def resumable(job: dict) -> bool:
    """A stopped or failed job, or a finished one that asks for a rerun, can be resumed."""
    state = job.get("state")
    return state in ("stopped", "failed") or (
        state == "done" and "rerun" in str(job.get("message", "")).lower())


def jobs_caption(all_jobs: list[dict], refresh_s: float) -> str:
    running = sum(j.get("state") == "running" for j in all_jobs)
    return (f"{len(all_jobs)} job(s), {running} running"
            + (f"; refreshing every {refresh_s:g} s" if running else "")
            + (f"; showing the {MAX_JOBS_SHOWN} newest" if len(all_jobs) > MAX_JOBS_SHOWN else ""))


def job_label(job: dict) -> str:
    label = f"{job['name']} · {job.get('kind', '?')} · {job.get('state', '?')}"
    if job.get("progress") is not None and job.get("state") == "running":
        label += f" · {100 * job['progress']:.0f}%"
    return label
