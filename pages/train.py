"""Train page: start grounding, imagination and offline RL as background jobs, and watch them.

The commands the forms build, their checks and the job list's texts are ``kalm.ui.train``; jobs
run detached (``kalm.jobs``), so they go on when the tab is closed and show up here again.
"""

from __future__ import annotations

import streamlit as st

from kalm import jobs
from kalm.ui import train as tr
from kalm.ui.navigation import ensure_app_navigation
from kalm.ui.paths import stage_note

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

REFRESH_S = 2.0


# ----------------------------------------------------------------------------------- inputs
def option_widget(spec: jobs.OptionSpec, key: str):
    """One input for a CLI option; returns its value (lists and JSON parsed; errors raised)."""
    inp = tr.option_input(spec)
    return inp.parse(getattr(st, inp.widget)(**inp.kwargs, key=key))


def option_widgets(specs, main, key: str, special: dict | None = None) -> tuple[dict, list[str]]:
    """Inputs for ``specs``: the ``main`` ones in two columns, the rest in an expander.
    Returns (values, input errors). ``special`` maps a dest to a function drawing its input."""
    special, values, errors = special or {}, {}, []
    first, rest = tr.split_options(specs, main)

    def draw(group):
        cols = st.columns(2)
        for i, s in enumerate(group):
            with cols[i % 2]:
                try:
                    values[s.dest] = special.get(s.dest, option_widget)(s, f"{key}-{s.dest}")
                except ValueError as e:
                    errors.append(str(e))

    draw(first)
    if rest:
        with st.expander("More options"):
            draw(rest)
    return values, errors


def run_name_input(prefix: str) -> tuple[str, bool]:
    key = f"{prefix}-name"
    if key not in st.session_state:
        st.session_state[key] = tr.default_name(prefix)
    c1, c2 = st.columns([3, 2])
    name = c1.text_input("Run folder", key=key,
                         help=f"a folder inside the runs folder ({jobs.runs_dir()})")
    c2.write("")
    existing = c2.checkbox("Use it even if it exists", key=f"{prefix}-existing",
                           help="its files may be replaced; the stage resumes when the command "
                                "is the same")
    return name, existing


def launch(kind: str, argv_fn, name: str, allow_existing: bool) -> None:
    """Start a job from a form; show what happened (never a traceback)."""
    try:
        run_dir = jobs.safe_run_path(name)
        job = jobs.start_job(kind, argv_fn(run_dir), run_dir, allow_existing=allow_existing)
    except jobs.JobExists as e:
        st.error(f"{e}. Tick *Use it even if it exists* to confirm.")
    except (jobs.JobError, ValueError, OSError) as e:
        st.error(str(e))
    except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
        st.error(f"could not start the job: {type(e).__name__}: {e}")
    else:
        st.success(f"Started {kind} job **{job['name']}** (pid {job['pid']}); it is listed "
                   "below.")


def picker(label: str, choices: list[tuple[str, str]], key: str, missing: str, multi=False):
    labels = dict(choices)
    if multi:
        return st.multiselect(label, list(labels), format_func=labels.get, key=key,
                              help="none: real data only")
    if choices:
        return st.selectbox(label, list(labels), format_func=labels.get, key=key)
    st.warning(missing)
    return None


def show_errors(errors: list[str]) -> bool:
    for e in errors:
        st.error(e)
    return bool(errors)


# ----------------------------------------------------------------------------------- forms
def ground_form() -> None:
    from kalm.llm.config import PRESETS, GroundConfig

    st.markdown("Ground a causal LM on real rollouts (`python -m kalm ground`). Rerunning the "
                "same command in the same folder resumes from the last checkpoint.")
    presets = sorted(PRESETS)
    preset = st.selectbox("Preset", presets, index=presets.index("cpu") if "cpu" in presets else 0,
                          key="ground-preset",
                          help="option defaults: cpu (2 cores, about an hour), gpu, tiny (seconds)")
    defaults = jobs.config_defaults(GroundConfig, PRESETS[preset])
    specs = jobs.cli_options("ground", defaults)
    with st.form("ground-form"):
        data = picker("Dataset", tr.dataset_choices(), "ground-data",
                      "No dataset found: collect one first (Data page or `python -m kalm collect`).")
        name, existing = run_name_input("ground")
        values, errors = option_widgets(specs, tr.GROUND_MAIN, f"ground-{preset}")
        submitted = st.form_submit_button("Start grounding", type="primary")
    if submitted and not show_errors(tr.ground_problems(errors, data, defaults, values)):
        launch("ground", lambda d: tr.ground_argv(data, d, preset, specs, values), name,
               existing)


def imagine_form() -> None:
    from kalm.envs.base import SUITES

    st.markdown("Let a grounded LM imagine rollouts for goal texts (`python -m kalm imagine`), "
                "each checked against the simulator. A rerun resumes from finished batches.")
    specs = {s.dest: s for s in jobs.cli_options("imagine")}
    with st.form("imagine-form"):
        model = picker("Grounded model", tr.grounded_choices(), "imagine-model",
                       "No grounded model found: ground one first (form on the left).")
        source = st.radio("Goals", ["Suites", "Goals file"], horizontal=True, key="imagine-source")
        suites = st.multiselect("Suites", list(SUITES), default=["rephrase", "easy", "hard"],
                                key="imagine-suites",
                                help="used when Goals is Suites: KALM's novel-goal categories")
        upload = st.file_uploader("Goals file (JSON Lines)", type=["jsonl", "json", "txt"],
                                  key="imagine-goals",
                                  help="used when Goals is Goals file; copied into the run folder")
        cols, numbers = st.columns(3), {}
        for col, label, arg, low, default in tr.IMAGINE_NUMBERS:
            value = int(specs[default].default) if isinstance(default, str) else default
            numbers[arg] = cols[col].number_input(label, min_value=low, value=value, step=1,
                                                  key=f"imagine-{arg.replace('_', '-')}")
        explain = st.checkbox("Ask for explanations (cycle consistency; slower)", value=True,
                              key="imagine-explain")
        explain_constrained = st.checkbox(
            "Explanations among the goals each rollout made true", value=False,
            key="imagine-explain-constrained",
            help="`--explain-constrained`: the LM's explanation is decoded among the training "
                 "phrasings of the goals the rollout's own states made true (default: free text, "
                 "as published)")
        name, existing = run_name_input("imagine")
        submitted = st.form_submit_button("Start imagination", type="primary")
    goals_bytes = None if source == "Suites" or upload is None else upload.getvalue()
    if not submitted or show_errors(tr.imagine_problems(model, source == "Suites", suites,
                                                        goals_bytes)):
        return

    def argv(run_dir) -> list[str]:
        goals = (tr.write_goals_file(run_dir, name, goals_bytes, existing)
                 if goals_bytes is not None else None)
        return tr.imagine_argv(model, run_dir, suites=suites, goals=goals, explain=explain,
                               explain_constrained=explain_constrained, **numbers)

    # The uploaded goals file lands in the folder before the job starts: allow that folder.
    launch("imagine", argv, name, existing or goals_bytes is not None and not tr.holds_files(name))


def train_form() -> None:
    ok, why = tr.rl_available()
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
    algos = getattr(rl_config, "ALGOS", {})

    def algo_widget(spec, key):
        names = tr.algo_names(algos)
        if not names:
            return option_widget(spec, key)
        default = spec.default if spec.default in names else names[0]
        return st.selectbox("algo", names, index=names.index(default), help=spec.help or None,
                            format_func=lambda k: f"{k} · {getattr(algos[k], 'description', '')}",
                            key=key)

    with st.form("train-form"):
        real = imag = None
        if "real" in dests:
            real = picker("Real dataset", [(p, label) for p, label in tr.dataset_choices()
                                           if not p.endswith("imagined.npz")],
                          "train-real", "No dataset found: collect one first.")
        if "imagined" in dests:
            imag = picker("Imagined rollouts (imagine runs)", tr.imagined_choices(),
                          "train-imagined", "", multi=True)
        name, existing = run_name_input("train")
        values, errors = option_widgets(specs, tr.TRAIN_MAIN, "train", {"algo": algo_widget})
        submitted = st.form_submit_button("Start training", type="primary")
    if submitted and not show_errors(tr.train_problems(errors, "real" in dests, real, defaults,
                                                       values, imag)):
        launch("train", lambda d: tr.train_argv(d, real, imag, specs, values), name, existing)


# ----------------------------------------------------------------------------------- jobs
def curves(job: dict) -> None:
    found = tr.curve_columns(jobs.read_metrics(job["run_dir"]))
    if found is None or not found[2]:
        st.caption("No metrics yet." if found is None else "No numeric metrics yet.")
        return
    df, x, numeric, default = found
    chosen = st.multiselect("Curves", numeric, default=default, key=f"curves-{job['name']}")
    if chosen:
        st.plotly_chart(tr.curves_figure(df, x, chosen), key=f"chart-{job['name']}")


def show_job(job: dict) -> None:
    st.markdown(tr.job_summary(job))
    if job.get("progress") is not None:
        st.progress(float(job["progress"]), text=tr.job_progress_text(job))
    elif job.get("message"):
        st.caption(job["message"])
    if job.get("note"):
        st.caption(job["note"])
    st.code(job.get("command", ""), language="bash", wrap_lines=True)
    act = None
    if job.get("state") == "running":
        if st.button("Stop", key=f"stop-{job['name']}",
                     help="SIGTERM (the stage saves its work), then SIGKILL after 15 s"):
            act = jobs.stop_job
    elif tr.resumable(job) and st.button("Resume", key=f"resume-{job['name']}",
                                         help="run the same command again in this folder; the "
                                              "stage resumes from its saved work"):
        act = jobs.resume_job
    if act is not None:
        try:
            with st.spinner("Stopping…" if act is jobs.stop_job else "Resuming…"):
                act(job["run_dir"])
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
    st.caption(tr.jobs_caption(all_jobs, REFRESH_S))
    for i, job in enumerate(all_jobs[:tr.MAX_JOBS_SHOWN]):
        with st.expander(tr.job_label(job), expanded=job.get("state") == "running" or i == 0):
            show_job(job)


# ----------------------------------------------------------------------------------- page
st.title("Train")
if _note := stage_note("train"):
    st.caption(_note)
st.caption("Start the pipeline's long stages as background jobs: they keep running when this "
           "tab is closed, and show up here again with their progress, curves and logs.")

tab_ground, tab_imagine, tab_rl = st.tabs(["1 · Ground", "2 · Imagine", "3 · Offline RL"])
for tab, form, what in ((tab_ground, ground_form, "grounding"),
                        (tab_imagine, imagine_form, "imagination"),
                        (tab_rl, train_form, "offline RL")):
    with tab:
        try:
            form()
        except (ImportError, jobs.JobError) as e:
            st.error(f"{what} cannot be started here: {e}")

st.header("Jobs")
try:
    _any_running = any(j.get("state") == "running" for j in jobs.list_jobs())
except OSError:
    _any_running = False
st.fragment(run_every=REFRESH_S if _any_running else None)(job_list)()
