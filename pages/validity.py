"""Validity page: the report of an imagined set (a folder made by `python -m kalm imagine`)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import streamlit as st  # noqa: E402

from kalm.ui.paths import (  # noqa: E402
    stage_note,
    PathNotAllowed,
    app_runs_root,
    confine,
    display_path,
    find_imagined_sets,
)
from kalm.ui.plots import histogram_figure  # noqa: E402
from kalm.ui.report import (  # noqa: E402
    FAILURE_LABELS,
    HISTOGRAMS,
    ImaginedSetError,
    category_table,
    extra_checks_table,
    filter_rollouts_table,
    imagine_command,
    imagined_set_env,
    load_imagined_set,
    worst_rollouts,
)
from kalm.ui.navigation import ensure_app_navigation  # noqa: E402

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

OTHER = "Other folder…"
TABLE_COLUMNS = ["index", "category", "text", "steps", "goal_met", "realistic_transitions",
                 "transitions", "dynamics_error_mean", "dynamics_error_max",
                 "out_of_workbench_states", "overlap_states", "absurd_states", "replay_success",
                 "replay_final_error", "cycle_consistent", "explanation_true", "explanation",
                 "failures"]


def _stamp(folder: Path) -> tuple:
    out = []
    for name in ("imagined.npz", "validity.csv", "summary.json"):
        p = folder / name
        try:
            s = p.stat()
            out.append((name, s.st_mtime, s.st_size))
        except OSError:
            out.append((name, None, None))
    return tuple(out)


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(folder: str, stamp: tuple):
    return load_imagined_set(folder)


@st.cache_data(show_spinner=False, max_entries=16)
def _video(folder: str, stamp: tuple, row: int) -> bytes:
    from kalm.imagine.render import imagined_frames
    from kalm.video import mp4_bytes

    ep = _load(folder, stamp).dataset[row]
    env = getattr(ep, "env", None) or "clevr"
    if env == "clevr":
        return mp4_bytes(imagined_frames(ep.observations, ep.actions, side_by_side_replay=True))
    # another environment replays from the episode's seeded reset (Meta-World: imagined states
    # posed in the scene, at most about 25 drawn steps a side)
    from kalm.ui.imagine import video_stride

    return mp4_bytes(imagined_frames(ep.observations, ep.actions, side_by_side_replay=True,
                                     env=env, goal=ep.goal, seed=ep.seed,
                                     step_stride=video_stride(len(ep.actions), env)))


def _pct(df):
    return {c: st.column_config.NumberColumn(format="%.1f%%") for c in df.columns
            if c not in ("rollouts", "mean per-ball error", "mean steps")}


st.title("Validity")
_note = stage_note("imagine")
if _note:
    st.caption(_note)
st.caption(
    "How sound is an imagined set? Per-category rates, the distribution of each validity figure, "
    "rollouts filtered by what went wrong, and the worst ones with their videos (imagined left, "
    "simulator replay right)."
)

found = find_imagined_sets()
if not found:
    st.info(
        f"No imagined set under the runs folder (`{app_runs_root()}`) yet. Make a small one with "
        "the shipped grounded model (a few minutes on a CPU), then reload this page:"
    )
    st.code(imagine_command(), language="bash")
labels = [f.label for f in found]
choice = st.selectbox("Imagined set", labels + [OTHER], key="val_set",
                      help="Imagine run folders under the runs folder, newest first, then the shipped sets in assets/imagined.")
if choice == OTHER:
    typed = st.text_input("Folder of an imagined set, inside the runs folder or assets/",
                          key="val_path")
    if not typed.strip():
        st.stop()
    try:
        folder = confine(typed)
    except PathNotAllowed as e:
        st.error(str(e))
        st.stop()
else:
    folder = found[labels.index(choice)].path

try:
    stamp = _stamp(folder)
    s = _load(str(folder), stamp)
except ImaginedSetError as e:
    st.error(str(e))
    st.stop()
except Exception as e:  # anything unexpected in a damaged folder: a message, not a traceback
    st.error(f"Could not read the imagined set `{display_path(folder)}`: {e}")
    st.stop()

for p in s.problems:
    st.warning(p)
set_env = imagined_set_env(s)
if set_env != "clevr":
    from kalm.envs import get_env

    st.caption(f"Imagined in **{get_env(set_env).title}**: its simulator cannot be set to an "
               "imagined state, so a transition is realistic when it is physically plausible (no "
               "gripper jump, no floating object, nothing absurd); the “per-ball” errors below are "
               "the hand's distance (m) to the open-loop replay from the seeded reset, the "
               "workbench is the arm's workspace, and overlap is not checked.")

table = s.table
st.markdown(f"**{len(table)} rollouts** in `{display_path(folder)}`")
if s.summary:
    gen = s.summary.get("generation") or {}
    cfg = s.summary.get("config") or {}
    bits = []
    if gen.get("rollouts_per_s"):
        bits.append(f"{gen['rollouts_per_s']} rollouts/s generated")
    if gen.get("wall_s") is not None:
        bits.append(f"{gen['wall_s']} s wall time")
    if cfg:
        bits.append(f"per goal {cfg.get('per_goal')}, seed {cfg.get('seed')}, "
                    f"max steps {cfg.get('max_steps')}")
        guide = cfg.get("guide") or (gen.get("guided") or {}).get("guide")
        replan = cfg.get("replan")
        ahead = cfg.get("guide_horizon")
        walls = ", kept off the walls" if cfg.get("guide_obstacles") else ""
        bits.append(f"goal-guided decoding (K = {guide}"
                    + (f", scored {ahead} predicted steps on{walls})" if ahead else f"{walls})")
                    if guide else
                    f"greedy decoding, re-planned up to {replan} times a step" if replan else
                    "greedy decoding")
        if cfg.get("settle"):
            bits.append(f"{cfg['settle']} steps written past each goal's first success")
        if cfg.get("explain_constrained") or gen.get("explanations"):
            bits.append("explanations among the goals each rollout made true")
    if bits:
        st.caption(" · ".join(bits))
    with st.expander("summary.json"):
        st.json(s.summary, expanded=1)
if not len(table):
    st.warning("This imagined set holds no rollouts.")
    st.stop()

# ----------------------------------------------------------------------------- per category
st.subheader("Per category")
cats = category_table(s)
st.dataframe(cats, column_config={**_pct(cats),
                                  "mean per-ball error":
                                      st.column_config.NumberColumn(format="%.4f"),
                                  "mean steps": st.column_config.NumberColumn(format="%.1f")})
st.caption("Rates in % of rollouts (realistic transitions: of all transitions). Cycle consistent: "
           "the LM's explanation names the intended goal; explanation true of the rollout: it names "
           "a goal the rollout made true, the intended one or another (both empty when not "
           "computed, e.g. sets imagined before this check existed).")

extra = extra_checks_table(s)
if extra is not None:
    st.subheader("Per goal: the environment's own checks")
    st.dataframe(extra, column_config={c: st.column_config.NumberColumn(format="%.1f")
                                       for c in extra.columns if c.endswith("%")})
    st.caption("% of each goal's rollouts flagged by each check this environment adds (an empty "
               "cell: the goal has no such check, e.g. through the wall on a task without one). "
               "Match: the goal's rule holds on a state the LM wrote; replay: the imagined "
               "actions, run open loop in the simulator, reach it.")

# ----------------------------------------------------------------------------- distributions
st.subheader("Distributions")
by_cat = st.toggle("Stack by category", True, key="val_stack")
cols = st.columns(2)
k = 0
for col, title, marker, marker_text in HISTOGRAMS:
    if col not in table or table[col].dropna().empty:
        continue
    with cols[k % 2]:
        st.plotly_chart(histogram_figure(table[col].astype(float).to_numpy(), title,
                                         groups=table["category"].tolist() if by_cat else None,
                                         marker=marker, marker_text=marker_text),
                        key=f"val_hist_{col}")
    k += 1

# ----------------------------------------------------------------------------- filters
st.subheader("Rollouts by failure type")
f1, f2, f3 = st.columns([2, 1.2, 0.8])
failures = f1.multiselect("Failure types", list(FAILURE_LABELS), format_func=FAILURE_LABELS.get,
                          key="val_failures", placeholder="any rollout")
cat_pick = f2.multiselect("Categories", sorted(table["category"].unique()), key="val_cats",
                          placeholder="all categories")
match = f3.radio("Rollouts with", ("any", "all"), horizontal=True, key="val_match",
                 help="of the chosen failure types")
counts = {f: int(sum(f in ft for ft in table["failure_types"])) for f in FAILURE_LABELS}
st.caption(" · ".join(f"{FAILURE_LABELS[f]}: {n}" for f, n in counts.items()))
shown = filter_rollouts_table(table, failures, cat_pick, match)
st.dataframe(shown[[c for c in TABLE_COLUMNS if c in shown]], hide_index=True, height=300,
             column_config={c: st.column_config.NumberColumn(format="%.4f")
                            for c in ("dynamics_error_mean", "dynamics_error_max",
                                      "replay_final_error")})
st.caption(f"{len(shown)} of {len(table)} rollouts.")

# ----------------------------------------------------------------------------- worst
st.subheader("Worst rollouts")
w1, w2 = st.columns([1, 1])
error_words = ("per-ball error" if set_env == "clevr" else "hand distance to the replay")
by = w1.radio("Sorted by", ("dynamics_error_max", "dynamics_error_mean"), horizontal=True,
              format_func={"dynamics_error_max": f"max {error_words}",
                           "dynamics_error_mean": f"mean {error_words}"}.get, key="val_by")
k_worst = w2.number_input("How many", 1, 50, 5, key="val_k")
worst = worst_rollouts(shown, int(k_worst), by=by)
if worst.empty:
    st.info("No rollout matches the filters above.")
if s.dataset is None and not worst.empty:
    st.info("Videos need imagined.npz, which is missing or unreadable in this folder.")
rendered = st.session_state.setdefault("val_rendered", set())
for row, r in worst.iterrows():
    err = r[by]
    label = (f"#{r['index']} · {r['category']} · “{r['text']}” · "
             + ("unmeasurable (absurd states)" if err != err else f"error {err:.4f}"))
    with st.expander(label, expanded=False):
        info, video = st.columns(2)
        with info:
            st.markdown(f"**Failures:** {r['failures']}  \n"
                        f"**Steps:** {r['steps']} · realistic transitions "
                        f"{r['realistic_transitions']}/{r['transitions']} · replay "
                        f"{'succeeds' if r['replay_success'] else 'fails'}")
            if isinstance(r.get("explanation"), str) and r["explanation"]:
                st.markdown(f"**LM's explanation:** “{r['explanation']}”")
            st.caption("Goal spec")
            st.json(json.loads(r["goal"]))
        if s.dataset is None:
            continue
        vkey = (str(folder), stamp, int(row))
        with video:
            if vkey in rendered or st.button("Render video", key=f"val_render_{row}"):
                try:
                    with st.spinner("Rendering in MuJoCo…"):
                        st.video(_video(str(folder), stamp, int(row)), loop=True)
                    st.caption("Left: imagined states. Right: the simulator replaying the actions."
                               if set_env == "clevr" else
                               "Left: imagined states, posed in the scene. Right: the simulator "
                               "running the actions open loop from the same seeded reset.")
                    rendered.add(vkey)
                except Exception as e:
                    st.error(f"Could not render this rollout: {e}")
