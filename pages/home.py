"""Home page: KALM in three steps, a one-click demo, and the runs found on this machine."""

from kalm.ui.navigation import ensure_app_navigation

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

import os  # noqa: E402

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco (the demo's video)
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import streamlit as st  # noqa: E402
from streamlit.errors import StreamlitAPIException  # noqa: E402

import kalm  # noqa: E402
from kalm.ui import home as home_ui  # noqa: E402
from kalm.ui import preload  # noqa: E402
from kalm.ui.paths import display_path  # noqa: E402

STEPS = [
    (
        "1 · Ground",
        "Fine-tune a small causal LM on real CLEVR-Robot rollouts so that it reads and writes "
        "states and actions as numbers, alongside the goal text.",
    ),
    (
        "2 · Imagine",
        "Ask the grounded LM for rollouts that reach novel goals (rephrased, unseen, or harder "
        "instructions) and keep the imaginary rollouts that pass validity checks.",
    ),
    (
        "3 · Learn",
        "Train a goal-conditioned policy with offline RL on the real and imaginary rollouts "
        "together, then evaluate it on goal suites in the simulator.",
    ),
]

DIAGRAM = """
digraph kalm {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fillcolor="#f0f2f6", fontname="Helvetica"];
  edge [fontname="Helvetica", fontsize=10];
  real    [label="Real rollouts\\n(CLEVR-Robot)"];
  lm      [label="LM"];
  grounded[label="Grounded LM"];
  goals   [label="Novel goal texts"];
  imag    [label="Imaginary rollouts"];
  policy  [label="Goal-conditioned\\npolicy"];
  real -> grounded [label="ground"];
  lm -> grounded;
  goals -> imag;
  grounded -> imag [label="imagine"];
  real -> policy [label="offline RL"];
  imag -> policy [label="offline RL"];
}
"""

ICONS = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]",
         None: ":gray[:material/info:]"}


@st.cache_data(show_spinner=False, max_entries=4)
def _demo_video(observations, actions) -> bytes:
    from kalm.ui.imagine import side_by_side_video

    return side_by_side_video(observations, actions)[0]


def page_link(page: str, label: str, icon: str) -> None:
    """A link to another page of the app (a caption when the page runs outside the app)."""
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        st.caption(f"{label}: open it from the sidebar.")


def run_demo(model_dir: Path, slot) -> None:
    """Wait for the model (loaded once per server, in the background: the Imagine page shares
    it), imagine the demo goal, show the rollout, its checks and video, then the explanation.

    ``slot``: the demo's placeholder. What it shows while it waits and imagines is one element
    at a time, so that the last demo (a container, its video playing) is gone at once."""
    from kalm.envs import get_env
    from kalm.ui.imagine import explain_rollout, imagine_rollout, throttled

    t0 = time.perf_counter()
    st.session_state.pop("home_demo", None)
    res = preload.grounded(model_dir)
    slot.info("The LM is imagining the rollout…")
    try:
        model = preload.wait(res, lambda s: slot.info(
            f":material/hourglass_top: Loading {res.label}… {s:.0f} s (once per server)"))
    except Exception as e:  # missing base LM, corrupt weights: a message, not a traceback
        slot.error(f"Could not load the grounded model `{display_path(model_dir)}`: {e}")
        return
    t1 = time.perf_counter()
    slot.info("The LM is imagining the rollout…")
    try:
        result = imagine_rollout(
            model, home_ui.DEMO_TEXT, home_ui.DEMO_SEED, goal=get_env(model.env_name).goal_from_dict(home_ui.DEMO_GOAL),
            max_steps=home_ui.DEMO_MAX_STEPS, category=home_ui.DEMO_CATEGORY,
            on_step=throttled(lambda t, o, a: slot.info(
                f"The LM is imagining the rollout… step {t + 1}"), 0.3))
    except Exception as e:
        slot.error(f"The demo could not imagine its rollout: {e}")
        return
    demo = {"result": result, "clicked": t0, "load_s": t1 - t0}
    st.session_state["home_demo"] = demo
    with slot.container():
        validity_slot, explanation_slot = show_demo(demo, explaining=True)
    try:
        demo["result"] = explain_rollout(model, result)
    except Exception as e:
        explanation_slot.error(f"The LM could not explain its rollout: {e}")
        return
    demo["explained_s"] = time.perf_counter() - t0
    with validity_slot.container():
        show_validity(demo["result"])
    with explanation_slot.container():
        show_explanation(demo)


def show_validity(r) -> None:
    from kalm.ui.imagine import validity_checks

    v = r.validity
    rows = ["| | Check | Result |", "|---|---|---|"]
    rows += [f"| {ICONS[c.ok]} | {c.name} | {c.value} |" for c in validity_checks(v)]
    st.markdown("\n".join(rows))
    fails = v.failure_types()
    if fails:
        st.caption("Failure types: " + ", ".join(fails) + ". The Imagine page explains each "
                   "check.")
    else:
        st.success("Fully valid: every check passed.")


def show_explanation(demo: dict) -> None:
    r = demo["result"]
    if r.explanation is not None:
        st.markdown(f"The LM explains its rollout as: “{r.explanation or '(empty)'}” "
                    + ("(cycle consistent)" if r.validity.cycle_consistent else
                       "(another goal than the intended one: not cycle consistent)"))
    if "explained_s" in demo:
        st.caption(f"{demo['explained_s']:.1f} s from the click to the explanation "
                   f"({r.timings.get('explain_s', 0):.1f} s explaining).")


def show_demo(demo: dict, explaining: bool = False):
    """The demo's rollout: validity (its table), video, and the explanation (a placeholder while
    ``explaining``; returned, to be filled)."""
    r = demo["result"]
    st.markdown(f"**“{r.text}”** · {r.steps} steps imagined from reset seed {r.reset_seed}")
    left, right = st.columns([3, 2])
    with right:
        st.markdown("##### Validity")
        validity_slot = st.empty()
        with validity_slot.container():
            show_validity(r)
        explanation_slot = st.empty()
        with explanation_slot.container():
            if explaining:
                st.caption(":material/hourglass_top: The LM is explaining its rollout…")
            else:
                show_explanation(demo)
    with left:
        with st.spinner("Rendering the imagined states and the simulator's replay…"):
            try:
                mp4 = _demo_video(r.observations, r.actions)
            except Exception as e:  # no OpenGL, no ffmpeg: a message, not a traceback
                st.error(f"Could not render the rollout: {e}")
                mp4 = None
        if mp4 is not None:
            st.video(mp4, loop=True, autoplay=True, muted=True)
            st.caption("Left: the LM's imagined states. Right: the simulator replaying the same "
                       "actions from the same start.")
    clicked = demo.pop("clicked", None)
    if clicked is not None:
        demo["total_s"] = time.perf_counter() - clicked
    if "total_s" in demo:
        tm = r.timings
        st.caption(f"{demo['total_s']:.1f} s from the click to the video (waiting for the model "
                   f"{demo['load_s']:.1f} s, generation {tm.get('generate_s', 0):.1f} s, the rest "
                   "checks and rendering).")
    return validity_slot, explanation_slot


def table(rows: list[dict], empty: str, key: str) -> None:
    if rows:
        st.dataframe(rows, hide_index=True, key=key, width="stretch")
    else:
        st.info(empty)


# ----------------------------------------------------------------------------- page
st.title("KALM")
st.caption(f"Knowledgeable Agents from Language Model rollouts · kalm {kalm.__version__}")
st.markdown(
    "KALM grounds a language model on robot rollouts, lets it **imagine** rollouts for goals it "
    "has never seen, and learns a policy from real and imagined experience with offline RL."
)

st.header("The method in three steps")
for column, (name, text) in zip(st.columns(len(STEPS)), STEPS):
    with column:
        st.subheader(name)
        st.markdown(text)
st.graphviz_chart(DIAGRAM)

st.header("Try it: one click")
st.markdown(
    f"The shipped grounded model imagines a rollout for **“{home_ui.DEMO_TEXT}”**, a phrasing it "
    "never saw in training, from a fixed initial state (seed "
    f"{home_ui.DEMO_SEED}); the simulator then replays the imagined actions beside it, and the "
    "validity checks say whether the imagination is sound."
)
model_dir = Path(home_ui.DEMO_MODEL)
problem = home_ui.demo_model_problem(model_dir)
if problem:
    st.warning(problem + " The demo needs it: restore `assets/grounded/clevr` from the "
               "repository, or ground a model with `python -m kalm ground --data "
               "assets/data/aim4k.npz --out runs/NAME` and use it on the Imagine page.")
clicked = st.button("Imagine a novel goal", type="primary", icon=":material/auto_awesome:",
                    key="home_demo_go", disabled=problem is not None)
# The demo's place; it is filled at the end of the script, so that while the LM imagines, the
# rest of the page is already drawn (not left stale, fading, redrawn by the browser on the CPU
# the LM needs).
demo_area = st.empty()
links = st.columns(2)
with links[0]:
    page_link("pages/imagine.py", "More goals, seeds and batches on the Imagine page",
              ":material/auto_awesome:")
with links[1]:
    page_link("pages/compare.py", "Policies compared on the same goals on the Compare page",
              ":material/compare:")

st.header("Local runs")
runs = home_ui.local_runs()
st.caption(f"Found in `assets/` and in the runs folder `{home_ui.runs_folder_label()}` "
           "(`$KALM_RUNS_DIR`).")
m = st.columns(5)
m[0].metric("Datasets", len(runs.datasets))
m[1].metric("Grounded models", len(runs.grounded))
m[2].metric("Imagined sets", len(runs.imagined))
m[3].metric("Trained policies", len(runs.policies))
m[4].metric("Jobs", len(runs.jobs), f"{runs.running_jobs} running" if runs.running_jobs else None,
            delta_color="off")
tabs = st.tabs(["Datasets", "Grounded models", "Imagined sets", "Trained policies", "Jobs",
                "Run folders"])
with tabs[0]:
    table(runs.datasets, "No dataset found: make one with `python -m kalm collect --out "
          "runs/NAME/data.npz`.", "home_datasets")
    page_link("pages/data.py", "Browse their episodes on the Data page", ":material/dataset:")
with tabs[1]:
    table(runs.grounded, "No grounded model found: ground one on the Train page.",
          "home_grounded")
    page_link("pages/imagine.py", "Imagine with them on the Imagine page",
              ":material/auto_awesome:")
with tabs[2]:
    table(runs.imagined, "No imagined set yet: `python -m kalm imagine ... --out runs/NAME`, or "
          "start one on the Train page.", "home_imagined")
    page_link("pages/validity.py", "Their validity reports on the Validity page",
              ":material/fact_check:")
with tabs[3]:
    table(runs.policies, "No trained policy yet: train one on the Train page (or "
          "`python -m kalm train`).", "home_policies")
    page_link("pages/compare.py", "Evaluate them on the Compare page", ":material/compare:")
with tabs[4]:
    table(runs.jobs, "No background job yet: the Train page starts them.", "home_jobs")
    page_link("pages/train.py", "Follow, stop or resume them on the Train page",
              ":material/model_training:")
with tabs[5]:
    if runs.folders:
        st.dataframe(runs.folders, hide_index=True, key="home_folders", width="stretch")
    else:
        st.info(f"No runs yet. Runs appear here once created under "
                f"`{home_ui.runs_folder_label()}`.")
    for message in runs.problems:
        st.warning(message)

if clicked and problem is None:
    run_demo(model_dir, demo_area)  # shows the demo as it goes
elif st.session_state.get("home_demo") is not None:
    with demo_area.container():
        show_demo(st.session_state["home_demo"])
