"""Compare page: policies evaluated on the same goals and initial states, side by side.

The logic (policies found, the result cache in the runs folder, in-process and background
evaluation, tables, charts and the side-by-side videos) is ``kalm.ui.compare``; this page lays out
its widgets.
"""

from __future__ import annotations

import streamlit as st

from kalm import jobs
from kalm.envs import SUITES, env_names, get_env
from kalm.ui import compare as cmp
from kalm.ui.navigation import ensure_app_navigation

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

REFRESH_S = 2.0

st.title("Compare")
st.caption("Policies on the same goals and initial states: success per goal category, "
           "episode by episode, and side by side in the simulator.")

env_name = st.selectbox("Environment", env_names(), format_func=lambda n: get_env(n).title,
                        key="cmp-env")
labels = cmp.policy_choices(env_name)
if env_name != cmp.DEFAULT_ENV:  # trained and LLM policies exist for CLEVR-Robot only (issue 17)
    st.caption(f"On {get_env(env_name).title}: the expert and the random policy. Trained and "
               "grounded-LM policies for it come with its grounding and offline RL.")
c1, c2 = st.columns([3, 2])
with c1:
    if st.session_state.get("cmp-policies-env") != env_name:  # another environment: its defaults
        st.session_state.pop("cmp-policies", None)
        st.session_state["cmp-policies-env"] = env_name
    chosen = st.multiselect("Policies", list(labels), default=cmp.default_policies(labels, env_name),
                            format_func=labels.get, key="cmp-policies",
                            help="expert, random, trained policies (train run folders in the "
                                 "runs folder, assets/policies) and grounded LMs as policies "
                                 "(llm:DIR)")
with c2:
    suites = st.multiselect("Suites", list(SUITES), default=list(SUITES), key="cmp-suites")
c3, c4, c5 = st.columns(3)
with c3:
    episodes = int(st.number_input("Episodes per category", min_value=1, max_value=2000, value=20,
                                   step=1, key="cmp-episodes"))
with c4:
    seed = int(st.number_input("Seed", min_value=0, value=0, step=1, key="cmp-seed",
                               help="the same for every policy: same goals, same initial states"))
with c5:
    st.write("")
    background = st.toggle("Evaluate in the background", key="cmp-background",
                           help="as `python -m kalm evaluate --json` jobs (listed on the Train "
                                "page too): for slow policies such as the LLM baseline")

if any(s.startswith("llm:") for s in chosen):
    st.caption("LLM policies run the grounded LM at every step: slow on a CPU. Evaluate them in "
               "the background, on a few episodes.")
if not chosen or not suites:
    st.info("Choose at least one policy and one suite.")
    st.stop()

try:
    folders = {spec: cmp.cache_dir(spec, list(suites), episodes, seed, env_name) for spec in chosen}
except (OSError, ValueError) as e:
    st.error(f"could not prepare the cache in the runs folder: {e}")
    st.stop()
found = cmp.gather(folders)
results, running, failed = found.results, found.running, found.failed
missing = found.missing(chosen)

if missing:
    names = ", ".join(cmp.short_label(s, labels) for s in missing)
    if st.button(f"Evaluate {names}", type="primary", key="cmp-run"):
        for spec in missing:
            name = cmp.short_label(spec, labels)
            if background:
                try:
                    running[spec] = cmp.start_background(spec, list(suites), episodes, seed,
                                                         folders[spec], env_name)
                    failed.pop(spec, None)
                except (jobs.JobError, OSError) as e:
                    st.error(f"{name}: {e}")
                continue
            bar = st.progress(0.0, text=f"{name}: starting")

            def progress(done, total, bar=bar, name=name):
                bar.progress(done / total, text=f"{name}: {done}/{total} episodes")

            try:
                results[spec] = cmp.evaluate_here(spec, list(suites), episodes, seed,
                                                  folders[spec], progress, env_name)
                failed.pop(spec, None)
            except Exception as e:  # a policy that cannot load or run: a message, not a traceback
                failed[spec] = cmp.failure_message(e)
            bar.empty()
    elif results:
        st.caption(f"Not evaluated yet with these settings: {names}.")
for spec, msg in failed.items():
    st.warning(f"**{cmp.short_label(spec, labels)}** is not available: {msg}")


@st.fragment(run_every=REFRESH_S)
def background_jobs() -> None:
    done = False
    for spec in list(running):
        js = cmp.job_state(folders[spec])
        if js is None or js.get("state") != "running":
            done = True
            continue
        st.progress(js.get("progress") or 0.0,
                    text=cmp.background_line(spec, labels, folders[spec]))
        if st.button("Stop", key=f"cmp-stop-{folders[spec].name}"):
            try:
                jobs.stop_job(folders[spec])
            except (jobs.JobError, OSError) as e:
                st.error(str(e))
            done = True
    if done:
        st.rerun(scope="app")


if running:
    background_jobs()

if not results:
    if not running:
        st.info("Press **Evaluate** to run the chosen policies on the same seeded episodes.")
    st.stop()

# Results of other settings are cached separately; these all share the plan of `seed`.
st.header("Success per category")
st.dataframe(cmp.results_table(results, labels))
st.plotly_chart(cmp.results_chart(results, labels), key="cmp-chart")
st.caption("Success rate per goal category, error bars ± one standard error "
           f"(episodes per category: {episodes}, seed {seed}). Cached in "
           f"`{jobs.runs_dir() / cmp.CACHE}`.")

st.header("Side by side")
specs = list(results)
eps, n, default = cmp.shared_episodes(results)
if n == 0:
    st.info("These results hold no episodes to replay.")
else:
    c1, c2 = st.columns([4, 1])
    with c1:
        i = st.selectbox("Episode (same goal and initial state for every policy)", range(n),
                         index=default, format_func=lambda i: cmp.episode_label(i, eps, labels),
                         key="cmp-episode")
    video = cmp.video_path(folders, specs, i)
    make = False
    if not video.is_file():
        with c2:
            st.write("")
            make = st.button("Render video", key="cmp-video",
                             help="replays each policy's recorded actions from the episode's "
                                  "initial state in MuJoCo")
    if make and not video.is_file():
        try:
            with st.spinner("Rendering…"):
                cmp.episode_video([(cmp.short_label(s, labels), eps[s][i]) for s in specs[:4]],
                                  video, env_name)
        except Exception as e:  # noqa: BLE001 - shown to the user, never a traceback
            st.error(f"could not render the video: {type(e).__name__}: {e}")
        else:
            st.rerun()  # shows the cached video, without the button
    if video.is_file():
        st.video(str(video))
        st.caption("Each policy's recorded actions, replayed in MuJoCo from the episode's initial "
                   "state; a policy that finished early holds its last frame.")
        if len(specs) > 4:
            st.caption("The video shows the first four policies.")

st.header("Episodes")
only_failures = st.toggle("Failures only", value=True, key="cmp-failures")
table = cmp.episodes_table(results, labels, only_failures)
if table.empty:
    st.success("No failures." if only_failures else "No episodes.")
else:
    st.dataframe(table, hide_index=True)
