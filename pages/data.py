"""Data page: browse the real episodes of a dataset, with the video and plots of one episode."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from pathlib import Path  # noqa: E402

import streamlit as st  # noqa: E402

from kalm.data.episodes import DatasetError, dataset_summary, load_dataset  # noqa: E402
from kalm.ui.episodes import (  # noqa: E402
    OUTCOMES,
    episode_label,
    episode_table,
    filter_episodes,
    goal_kind,
    render_env_episode,
    render_episode,
)
from kalm.ui.paths import (  # noqa: E402
    DEFAULT_DATASET,
    PathNotAllowed,
    app_runs_root,
    confine,
    display_path,
    find_datasets,
)
from kalm.envs import get_env  # noqa: E402
from kalm.ui.navigation import ensure_app_navigation  # noqa: E402

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

OTHER = "Other path…"
MODES = {"simulate": "physics replay (the pusher moves the balls)",
         "states": "recorded states (drawn as stored)"}


def _stamp(path: Path) -> tuple[float, int]:
    st_ = path.stat()
    return st_.st_mtime, st_.st_size


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(path: str, stamp: tuple[float, int]):
    """A dataset, loaded once per file version (shared read-only between sessions)."""
    return load_dataset(path)


@st.cache_data(show_spinner=False, max_entries=24)
def _render(path: str, stamp: tuple[float, int], index: int, mode: str):
    ds = _dataset(path, stamp)
    ep = ds[index]
    if ds.env != "clevr":
        return render_env_episode(ds.env, ep, mode=mode)
    return render_episode(ep.observations, ep.actions, mode=mode)


st.title("Data")
st.caption(
    "Real episodes of an offline dataset: pick one to see its goal, its video rendered in MuJoCo "
    "and its positions and actions, step by step."
)

# ----------------------------------------------------------------------------- dataset
found = find_datasets()
labels = [f.label for f in found]
default = next((i for i, f in enumerate(found) if f.path.resolve() == DEFAULT_DATASET.resolve()), 0)
choice = st.selectbox("Dataset", labels + [OTHER], index=default if found else 0,
                      key="data_dataset",
                      help="Datasets in assets/data and under the runs folder "
                           f"({app_runs_root()}).")
if choice == OTHER:
    typed = st.text_input("Path of a dataset file (.npz), inside the runs folder or assets/",
                          key="data_path")
    if not typed.strip():
        st.info("Type the path of a dataset made by `python -m kalm collect ... --out PATH`.")
        st.stop()
    try:
        path = confine(typed)
    except PathNotAllowed as e:
        st.error(str(e))
        st.stop()
else:
    path = found[labels.index(choice)].path

try:
    stamp = _stamp(path)
    ds = _dataset(str(path), stamp)
except (OSError, DatasetError) as e:
    st.error(f"Could not read the dataset `{display_path(path)}`: {e}")
    st.stop()

summary = dataset_summary(ds)
c = st.columns(4)
c[0].metric("Episodes", f"{summary['episodes']:,}")
c[1].metric("Transitions", f"{summary['transitions']:,}")
c[2].metric("Success rate", f"{100 * summary['success_rate']:.1f}%")
c[3].metric("Mean length", f"{summary['mean_length']:.1f} steps")
with st.expander("How this dataset was made"):
    st.json({k: v for k, v in ds.meta.items()}, expanded=1)
if not len(ds):
    st.warning("This dataset holds no episodes.")
    st.stop()

# ----------------------------------------------------------------------------- filters
st.subheader("Episodes")
f1, f2, f3, f4 = st.columns([1.2, 1.2, 1, 1.6])
kinds = f1.multiselect("Goal kind", list(summary["goal_kinds"]), key="data_kinds",
                       placeholder="any kind")
cats = f2.multiselect("Category", list(summary["categories"]), key="data_cats",
                      placeholder="any category")
outcome = f3.radio("Outcome", OUTCOMES, horizontal=True, key="data_outcome")
needle = f4.text_input("Text contains", key="data_text", placeholder="e.g. red ball")
matches = filter_episodes(ds, kinds, cats, outcome, needle)
if not matches:
    st.warning("No episode matches these filters; loosen them.")
    st.stop()
with st.expander(f"Table of the {len(matches):,} matching episodes"):
    rows = episode_table(ds)
    st.dataframe([rows[i] for i in matches], hide_index=True, height=260)
pick = st.selectbox(f"Episode ({len(matches):,} match)", matches, key="data_episode",
                    format_func=lambda i: episode_label(i, ds[i]))
ep = ds[pick]

# ----------------------------------------------------------------------------- the episode
st.subheader(f"“{ep.text}”")
g1, g2 = st.columns([1, 1])
with g1:
    st.markdown(
        f"**Goal kind** `{goal_kind(ep)}` · **category** `{ep.category}` · **outcome** "
        f"{':green[**success**]' if ep.success else ':red[**failure**]'} · "
        f"**steps** {ep.length} · "
        f"**reset seed** {ep.seed}" + (" · *imagined*" if ep.imagined else "")
    )
    st.caption("Goal spec (JSON)")
    st.json(ep.goal)
with g2:
    if ep.info:
        st.caption("Episode info")
        st.json(ep.info, expanded=False)

env = get_env(ds.env)
clevr = env.name == "clevr"
modes = MODES if clevr else {"simulate": "physics replay of the actions from the seeded reset",
                             "states": "recorded states (the scene posed in each)"}
mode = st.radio("Video", list(modes), format_func=modes.get, horizontal=True, key="data_mode")
T = ep.length
v1, v2 = st.columns(2)
with v1:
    try:
        with st.spinner("Rendering the episode in MuJoCo…"):
            rendered = _render(str(path), stamp, int(pick), mode)
    except Exception as e:  # no OpenGL, ffmpeg missing: say so, keep the plots
        rendered = None
        st.error(f"Could not render the episode: {e}")
    if rendered is not None:
        st.video(rendered.mp4, loop=True)
        st.caption(f"{rendered.frames} frames at {rendered.fps:g} fps"
                   + (" (4 per push)." if clevr else f" ({env.title}, one per step)."))
with v2:
    step = st.slider("Step (synced with this frame and the markers on every plot)", 0, T, 0,
                     key=f"data_step_{pick}_{stamp[0]}") if T else 0
    if rendered is not None:
        nxt = "final state" if step >= T else f"next: {env.action_label(ep.actions[step])}"
        st.image(rendered.step_frames[step], caption=f"step {step} / {T} · {nxt}", width="stretch")

# The environment's figures of the episode (kalm.envs.base.Environment.episode_figures): its
# views of the states side by side, then the actions below them.
figs = env.episode_figures(ep.observations, ep.actions if T else None, step)
views = [(name, fig) for name, fig in figs.items() if name != "actions"]
for col, (name, fig) in zip(st.columns(len(views)) if len(views) > 1 else [st.container()],
                            views):
    with col:
        st.plotly_chart(fig, key=f"data_{name}")
for name, _ in views:
    if env.figure_notes.get(name):
        st.caption(env.figure_notes[name])
if "actions" in figs:
    st.plotly_chart(figs["actions"], key="data_actions")
    if env.figure_notes.get("actions"):
        st.caption(env.figure_notes["actions"])
else:
    st.info("This episode has no actions.")
