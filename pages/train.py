"""Train page: start grounding, imagination and offline RL as background jobs, and watch them.

Each form builds a ``python -m kalm ...`` command and hands it to ``kalm.jobs.start_job``, which
runs it in a detached worker: the job goes on when the tab is closed or the app restarts, and
this page finds it again from its run folder (``job.json``, ``status.json``, ``metrics.csv``).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path

import streamlit as st

from kalm import jobs
from kalm.ui.navigation import ensure_app_navigation

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

STATE_COLOURS = {"running": "blue", "done": "green", "failed": "red", "stopped": "orange"}
MAX_JOBS_SHOWN = 20
REFRESH_S = 2.0

# Options shown at the top of a form; the others go under "More options".
GROUND_MAIN = ("model", "steps", "batch_size", "lr", "max_minutes", "seed")
TRAIN_MAIN = ("algo", "steps", "batch_size", "imagined_ratio", "filter", "reward", "seed",
              "max_minutes", "eval_episodes")
# Options a form never shows (set by the form itself, or meaningless for a background job).
HIDDEN = {"out", "quiet", "json", "restart", "overwrite", "data", "real", "imagined", "preset",
          "help"}


# ----------------------------------------------------------------------------------- helpers
def _paths():
    """kalm.ui.paths when present (shared with the Data and Imagine pages), else None."""
    try:
        from kalm.ui import paths
    except ImportError:
        return None
    return paths


def dataset_choices() -> list[tuple[str, str]]:
    """(absolute path, label) of every dataset (.npz) the app may read."""
    p = _paths()
    if p is not None:
        return [(str(f.path.resolve()), f.label) for f in p.find_datasets()]
    root = jobs.runs_dir()
    found = sorted((jobs.REPO_ROOT / "assets" / "data").glob("*.npz"))
    found += sorted(root.glob("**/*.npz")) if root.is_dir() else []
    return [(str(f.resolve()), str(f)) for f in found if "parts" not in f.parts]


def grounded_choices() -> list[tuple[str, str]]:
    p = _paths()
    if p is not None:
        return [(str(f.path.resolve()), f.label) for f in p.find_grounded_models()]
    shipped = jobs.REPO_ROOT / "assets" / "grounded"
    found = [d for d in sorted(shipped.iterdir()) if (d / "grounded.json").is_file()] \
        if shipped.is_dir() else []
    return [(str(d.resolve()), str(d.relative_to(jobs.REPO_ROOT))) for d in found]


def imagined_choices() -> list[tuple[str, str]]:
    p = _paths()
    if p is not None:
        return [(str(f.path.resolve()), f.label) for f in p.find_imagined_sets()
                if (f.path / "imagined.npz").is_file()]
    root = jobs.runs_dir()
    found = sorted(root.glob("*/imagined.npz")) if root.is_dir() else []
    return [(str(f.parent.resolve()), f.parent.name) for f in found]


def default_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def option_widget(spec: jobs.OptionSpec, key: str):
    """One input for a CLI option; returns its value (lists and JSON parsed; errors raised)."""
    label = spec.dest.replace("_", " ")
    h = spec.help or None
    if spec.kind in ("bool", "flag"):
        return st.checkbox(label, value=bool(spec.default), help=h, key=key)
    if spec.kind == "choice":
        opts = list(spec.choices or [])
        idx = opts.index(spec.default) if spec.default in opts else 0
        return st.selectbox(label, opts, index=idx, help=h, key=key)
    if spec.kind == "int":
        return int(st.number_input(label, value=int(spec.default or 0), step=1, help=h, key=key))
    if spec.kind == "float":
        v = float(spec.default or 0.0)
        return float(st.number_input(label, value=v, step=max(abs(v) / 10, 1e-6) if v else 0.1,
                                     format="%g", help=h, key=key))
    if spec.kind == "list":
        text = st.text_input(label, value=" ".join(str(x) for x in (spec.default or [])),
                             help=(h or "") + " (separate values by spaces)", key=key)
        items = [t for t in text.replace(",", " ").split() if t]
        try:
            return [spec.item_type(t) for t in items]
        except ValueError:
            raise ValueError(f"{label}: {text!r} is not a list of {spec.item_type.__name__}") from None
    if spec.kind == "json":
        text = st.text_input(label, value=json.dumps(spec.default), help=(h or "") + " (JSON)",
                             key=key)
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"{label}: not valid JSON ({e})") from None
    return st.text_input(label, value="" if spec.default is None else str(spec.default), help=h,
                         key=key)


def option_widgets(specs: list[jobs.OptionSpec], main: tuple[str, ...], key: str,
                   special: dict | None = None) -> tuple[dict, list[str]]:
    """Inputs for ``specs``: the ``main`` ones in two columns, the rest in an expander.

    Returns (values, input errors). ``special`` maps a dest to a function drawing its input.
    """
    special = special or {}
    values, errors = {}, []
    shown = [s for s in specs if s.dest not in HIDDEN]
    first = [s for name in main for s in shown if s.dest == name]
    rest = [s for s in shown if s not in first]

    def draw(s):
        try:
            fn = special.get(s.dest)
            values[s.dest] = fn(s, f"{key}-{s.dest}") if fn else option_widget(s, f"{key}-{s.dest}")
        except ValueError as e:
            errors.append(str(e))

    cols = st.columns(2)
    for i, s in enumerate(first):
        with cols[i % 2]:
            draw(s)
    if rest:
        with st.expander("More options"):
            cols = st.columns(2)
            for i, s in enumerate(rest):
                with cols[i % 2]:
                    draw(s)
    return values, errors


def run_name_input(prefix: str) -> tuple[str, bool]:
    key = f"{prefix}-name"
    if key not in st.session_state:
        st.session_state[key] = default_name(prefix)
    c1, c2 = st.columns([3, 2])
    with c1:
        name = st.text_input("Run folder", key=key,
                             help=f"a folder inside the runs folder ({jobs.runs_dir()})")
    with c2:
        st.write("")
        existing = st.checkbox("Use it even if it exists", key=f"{prefix}-existing",
                               help="its files may be replaced; the stage resumes when the "
                                    "command is the same")
    return name, existing


def launch(kind: str, argv_fn, name: str, allow_existing: bool) -> None:
    """Start a job from a form; show what happened (never a traceback)."""
    try:
        run_dir = jobs.safe_run_path(name)
        argv = argv_fn(run_dir)
        job = jobs.start_job(kind, argv, run_dir, allow_existing=allow_existing)
    except jobs.JobExists as e:
        st.error(f"{e}. Tick *Use it even if it exists* to confirm.")
        return
    except (jobs.JobError, ValueError, OSError) as e:
        st.error(str(e))
        return
    except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
        st.error(f"could not start the job: {type(e).__name__}: {e}")
        return
    st.success(f"Started {kind} job **{job['name']}** (pid {job['pid']}); it is listed below.")


# ----------------------------------------------------------------------------------- forms
def ground_form() -> None:
    from kalm.llm.config import PRESETS, GroundConfig

    st.markdown("Ground a causal LM on real rollouts (`python -m kalm ground`). Rerunning the "
                "same command in the same folder resumes from the last checkpoint.")
    presets = sorted(PRESETS)
    preset = st.selectbox("Preset", presets, index=presets.index("cpu") if "cpu" in presets else 0,
                          key="ground-preset",
                          help="option defaults: cpu (2 cores, about an hour), gpu, tiny (seconds)")
    datasets = dataset_choices()
    defaults = jobs.config_defaults(GroundConfig, PRESETS[preset])
    specs = jobs.cli_options("ground", defaults)
    with st.form("ground-form"):
        if datasets:
            labels = dict(datasets)
            data = st.selectbox("Dataset", list(labels), format_func=labels.get, key="ground-data")
        else:
            data = None
            st.warning("No dataset found: collect one first (Data page or `python -m kalm collect`).")
        name, existing = run_name_input("ground")
        values, errors = option_widgets(specs, GROUND_MAIN, f"ground-{preset}")
        submitted = st.form_submit_button("Start grounding", type="primary")
    if not submitted:
        return
    if errors:
        for e in errors:
            st.error(e)
        return
    if not data:
        st.error("choose a dataset first")
        return
    try:
        cfg_values = {k: v for k, v in values.items() if k in defaults}
        GroundConfig(**{**defaults, **cfg_values, "data": data}).validate()
    except (TypeError, ValueError) as e:
        st.error(f"bad grounding options: {e}")
        return

    def argv(run_dir: Path) -> list[str]:
        return ["--data", data, "--out", str(run_dir), "--preset", preset,
                *jobs.options_argv(specs, values)]

    launch("ground", argv, name, existing)


def imagine_form() -> None:
    from kalm.goals.suites import SUITES

    st.markdown("Let a grounded LM imagine rollouts for goal texts (`python -m kalm imagine`), "
                "each checked against the simulator. A rerun resumes from finished batches.")
    models = grounded_choices()
    specs = {s.dest: s for s in jobs.cli_options("imagine")}
    with st.form("imagine-form"):
        if models:
            labels = dict(models)
            model = st.selectbox("Grounded model", list(labels), format_func=labels.get,
                                 key="imagine-model")
        else:
            model = None
            st.warning("No grounded model found: ground one first (form on the left).")
        source = st.radio("Goals", ["Suites", "Goals file"], horizontal=True, key="imagine-source")
        suites = st.multiselect("Suites", list(SUITES), default=["rephrase", "easy", "hard"],
                                key="imagine-suites",
                                help="used when Goals is Suites: KALM's novel-goal categories")
        upload = st.file_uploader("Goals file (JSON Lines)", type=["jsonl", "json", "txt"],
                                  key="imagine-goals",
                                  help="used when Goals is Goals file; copied into the run folder")
        c1, c2, c3 = st.columns(3)
        with c1:
            limit = st.number_input("Limit (0 = every goal)", min_value=0, value=0, step=1,
                                    key="imagine-limit")
            seed = st.number_input("Seed", value=int(specs["seed"].default), step=1,
                                   key="imagine-seed")
        with c2:
            per_goal = st.number_input("Rollouts per goal", min_value=1,
                                       value=int(specs["per_goal"].default), step=1,
                                       key="imagine-per-goal")
            batch = st.number_input("Batch size", min_value=1,
                                    value=int(specs["batch_size"].default), step=1,
                                    key="imagine-batch")
        with c3:
            max_steps = st.number_input("Max steps (0 = the goal's horizon)", min_value=0,
                                        value=0, step=1, key="imagine-max-steps")
            videos = st.number_input("Videos per category", min_value=0,
                                     value=int(specs["videos"].default), step=1,
                                     key="imagine-videos")
        explain = st.checkbox("Ask for explanations (cycle consistency; slower)", value=True,
                              key="imagine-explain")
        name, existing = run_name_input("imagine")
        submitted = st.form_submit_button("Start imagination", type="primary")
    if not submitted:
        return
    if not model:
        st.error("choose a grounded model first")
        return
    goals_bytes = None
    if source == "Suites":
        if not suites:
            st.error("choose at least one suite")
            return
    else:
        if upload is None:
            st.error("upload a goals file (JSON Lines), or choose Suites")
            return
        goals_bytes = upload.getvalue()
        try:
            import tempfile

            from kalm.goals.suites import read_goals_file

            with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as f:
                f.write(goals_bytes)
                f.flush()
                read_goals_file(f.name)
        except (ValueError, OSError) as e:
            st.error(f"goals file: {e}")
            return

    def argv(run_dir: Path) -> list[str]:
        if goals_bytes is not None:
            if _holds_files(name) and not existing:
                raise jobs.JobExists(f"{name} already exists and holds files")
            if (run_dir / jobs.JOB_FILE).is_file() and \
                    jobs.job_status(run_dir).get("state") == "running":
                raise jobs.JobRunning(f"{name} is in use by a running job; stop it first")
            # Named by its content: a rerun with the same file resumes, another file never
            # replaces the one an earlier run used.
            goals = run_dir / f"goals-{hashlib.sha1(goals_bytes).hexdigest()[:10]}.jsonl"
            run_dir.mkdir(parents=True, exist_ok=True)
            if not goals.is_file():
                goals.write_bytes(goals_bytes)
            src = ["--goals", str(goals)]
        else:
            src = ["--suite", ",".join(suites)]
        a = ["--model", model, *src, "--per-goal", str(int(per_goal)), "--seed", str(int(seed)),
             "--out", str(run_dir), "--batch-size", str(int(batch))]
        if limit:
            a += ["--limit", str(int(limit))]
        if max_steps:
            a += ["--max-steps", str(int(max_steps))]
        if videos:
            a += ["--videos", str(int(videos))]
        if not explain:
            a.append("--no-explain")
        return a

    # The uploaded goals file lands in the folder before the job starts: allow that folder.
    launch("imagine", argv, name, existing or goals_bytes is not None and not _holds_files(name))


def _holds_files(name: str) -> bool:
    try:
        d = jobs.safe_run_path(name)
    except jobs.JobError:
        return False
    return d.is_dir() and any(p.name not in jobs.JOB_FILES for p in d.iterdir())


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


def train_form() -> None:
    ok, why = rl_available()
    if not ok:
        st.info(f"Offline RL cannot be started here: {why}.")
        return
    from kalm.rl import config as rl_config

    st.markdown("Learn a goal-conditioned policy with offline RL on real and imagined rollouts "
                "(`python -m kalm train`). The trained run folder is a policy for the Compare "
                "page.")
    defaults = jobs.config_defaults(rl_config.TrainConfig)
    specs = jobs.cli_options("train", defaults)
    dests = {s.dest for s in specs}
    datasets = [(p, label) for p, label in dataset_choices() if not p.endswith("imagined.npz")]
    imagined = imagined_choices()
    algos = getattr(rl_config, "ALGOS", {})

    def algo_widget(spec, key):
        names = sorted(algos, key=lambda k: (not getattr(algos[k], "discrete", True), k)) \
            if algos else []
        if not names:
            return option_widget(spec, key)
        default = spec.default if spec.default in names else names[0]

        def fmt(k):
            return f"{k} · {getattr(algos[k], 'description', '')}"

        return st.selectbox("algo", names, index=names.index(default), format_func=fmt,
                            help=spec.help or None, key=key)

    with st.form("train-form"):
        real = imag = None
        if "real" in dests:
            if datasets:
                labels = dict(datasets)
                real = st.selectbox("Real dataset", list(labels), format_func=labels.get,
                                    key="train-real")
            else:
                st.warning("No dataset found: collect one first.")
        if "imagined" in dests:
            labels = dict(imagined)
            imag = st.multiselect("Imagined rollouts (imagine runs)", list(labels),
                                  format_func=labels.get, key="train-imagined",
                                  help="none: real data only")
        name, existing = run_name_input("train")
        values, errors = option_widgets(specs, TRAIN_MAIN, "train", {"algo": algo_widget})
        submitted = st.form_submit_button("Start training", type="primary")
    if not submitted:
        return
    if errors:
        for e in errors:
            st.error(e)
        return
    if "real" in dests and not real:
        st.error("choose a real dataset first")
        return
    try:
        cfg_values = {k: v for k, v in values.items() if k in defaults}
        cfg = {**defaults, **cfg_values}
        if real:
            cfg["real"] = real
        if imag:
            cfg["imagined"] = list(imag)
        rl_config.TrainConfig(**cfg).validate()
    except (TypeError, ValueError) as e:
        st.error(f"bad training options: {e}")
        return

    def argv(run_dir: Path) -> list[str]:
        a = []
        if real:
            a += ["--real", real]
        if imag:
            a += ["--imagined", *imag]
        return a + ["--out", str(run_dir), *jobs.options_argv(specs, values)]

    launch("train", argv, name, existing)


# ----------------------------------------------------------------------------------- jobs
def curves(job: dict) -> None:
    rows = jobs.read_metrics(job["run_dir"])
    if not rows:
        st.caption("No metrics yet.")
        return
    import pandas as pd
    import plotly.graph_objects as go

    df = pd.DataFrame(rows)
    x = "step" if "step" in df.columns else df.columns[0]
    numeric = [c for c in df.columns if c != x and pd.api.types.is_numeric_dtype(df[c])
               and df[c].notna().any()]
    if not numeric:
        st.caption("No numeric metrics yet.")
        return
    preferred = [c for c in numeric
                 if "loss" in c or "success" in c or "rate" in c or c.startswith("val_")]
    chosen = st.multiselect("Curves", numeric, default=preferred[:8] or numeric[:4],
                            key=f"curves-{job['name']}")
    if not chosen:
        return
    fig = go.Figure()
    for c in chosen:
        d = df[[x, c]].dropna()
        fig.add_trace(go.Scatter(x=d[x], y=d[c], name=c,
                                 mode="lines+markers" if len(d) < 30 else "lines"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=x,
                      legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key=f"chart-{job['name']}")


def show_job(job: dict) -> None:
    state = job.get("state", "?")
    colour = STATE_COLOURS.get(state, "gray")
    started = job.get("started")
    ended = job.get("ended") or (time.time() if state == "running" else None)
    took = f" · {ended - started:,.0f} s" if started and ended else ""
    st.markdown(f":{colour}[**{state}**] · {job.get('kind', '?')} · started "
                f"{datetime.fromtimestamp(started).strftime('%Y-%m-%d %H:%M:%S') if started else '?'}"
                f"{took}" + (f" · return code {job['returncode']}"
                             if job.get("returncode") is not None else ""))
    progress = job.get("progress")
    if progress is not None:
        text = f"{job['step']:,.0f} / {job['total']:,.0f}" if job.get("total") else None
        if job.get("message"):
            text = f"{text} · {job['message']}" if text else job["message"]
        st.progress(float(progress), text=text)
    elif job.get("message"):
        st.caption(job["message"])
    if job.get("note"):
        st.caption(job["note"])
    st.code(job.get("command", ""), language="bash", wrap_lines=True)
    resumable = state in ("stopped", "failed") or (
        state == "done" and "rerun" in str(job.get("message", "")).lower())
    if state == "running":
        if st.button("Stop", key=f"stop-{job['name']}",
                     help="SIGTERM (the stage saves its work), then SIGKILL after 15 s"):
            try:
                with st.spinner("Stopping…"):
                    jobs.stop_job(job["run_dir"])
            except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
                st.error(str(e))
            else:
                st.rerun()
    elif resumable and st.button("Resume", key=f"resume-{job['name']}",
                                 help="run the same command again in this folder; the stage "
                                      "resumes from its saved work"):
        try:
            jobs.resume_job(job["run_dir"])
        except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
            st.error(str(e))
        else:
            st.rerun()
    tab_curves, tab_log = st.tabs(["Learning curves", "Log"])
    with tab_curves:
        curves(job)
    with tab_log:
        st.code(jobs.tail_log(job["run_dir"], lines=40) or "(empty)", language="text")


def job_list() -> None:
    try:
        all_jobs = jobs.list_jobs()
    except OSError as e:
        st.error(f"could not read the runs folder: {e}")
        return
    if not all_jobs:
        st.info(f"No jobs yet. Jobs started here appear in `{jobs.runs_dir()}`.")
        return
    running = sum(j.get("state") == "running" for j in all_jobs)
    st.caption(f"{len(all_jobs)} job(s), {running} running"
               + (f"; refreshing every {REFRESH_S:g} s" if running else "")
               + (f"; showing the {MAX_JOBS_SHOWN} newest" if len(all_jobs) > MAX_JOBS_SHOWN else ""))
    for i, job in enumerate(all_jobs[:MAX_JOBS_SHOWN]):
        label = f"{job['name']} · {job.get('kind', '?')} · {job.get('state', '?')}"
        if job.get("progress") is not None and job.get("state") == "running":
            label += f" · {100 * job['progress']:.0f}%"
        with st.expander(label, expanded=job.get("state") == "running" or i == 0):
            show_job(job)


# ----------------------------------------------------------------------------------- page
from kalm.ui.paths import stage_note  # noqa: E402

st.title("Train")
_note = stage_note("train")
if _note:
    st.caption(_note)
st.caption("Start the pipeline's long stages as background jobs: they keep running when this "
           "tab is closed, and show up here again with their progress, curves and logs.")

tab_ground, tab_imagine, tab_rl = st.tabs(["1 · Ground", "2 · Imagine", "3 · Offline RL"])
with tab_ground:
    try:
        ground_form()
    except (ImportError, jobs.JobError) as e:
        st.error(f"grounding cannot be started here: {e}")
with tab_imagine:
    try:
        imagine_form()
    except (ImportError, jobs.JobError) as e:
        st.error(f"imagination cannot be started here: {e}")
with tab_rl:
    try:
        train_form()
    except (ImportError, jobs.JobError) as e:
        st.error(f"offline RL cannot be started here: {e}")

st.header("Jobs")
try:
    _any_running = any(j.get("state") == "running" for j in jobs.list_jobs())
except OSError:
    _any_running = False
st.fragment(run_every=REFRESH_S if _any_running else None)(job_list)()
