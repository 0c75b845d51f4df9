"""Imagine page: a grounded LM writes rollouts for goal texts; each is shown beside the
simulator's replay of its actions, with its validity checks and the LM's own explanation.

The environment is the chosen model's (its ``grounded.json``): CLEVR-Robot's page has its own
figures (top view, push arrows, per-ball errors); Meta-World's offers its suites' goals (the wall
variants among the easy ones), parses typed texts with its own parser, draws the generic
state and action figures, its plausibility checks and the open-loop replay from the seeded reset.
Meta-World's widgets carry the environment in their keys (``im_text_metaworld``, ...)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from kalm.envs import get_env  # noqa: E402
from kalm.envs.base import SUITES  # noqa: E402
from kalm.imagine.validity import REALISTIC_TOLERANCE, validity_rates  # noqa: E402
from kalm.ui import preload  # noqa: E402
from kalm.ui.imagine import (  # noqa: E402
    GoalTextProblem,
    batch_rows,
    check_goal_text,
    explain_rollout,
    explanation_agrees,
    explanation_choices,
    explanation_label,
    folder_env,
    guide_choices,
    guide_horizon_choices,
    guide_label,
    horizon_label,
    imagine_batch,
    obstacle_choice_available,
    imagine_rollout,
    rollout_figures,
    side_by_side_video,
    throttled,
    validity_checks,
    video_stride,
)
from kalm.ui.paths import (  # noqa: E402
    stage_note,
    DEFAULT_GROUNDED,
    app_runs_root,
    display_path,
    find_grounded_models,
)
from kalm.ui.plots import (  # noqa: E402
    action_label,
    actions_figure,
    positions_figure,
    step_errors_figure,
    topview_figure,
    topview_image,
)
from kalm.ui.navigation import ensure_app_navigation  # noqa: E402

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

MODES = ("One goal", "Batch of goals")
NO_PICK = "(type your own below)"
MAX_BATCH = 32


CLEVR = "clevr"
PLACEHOLDERS = {CLEVR: "e.g. Put the red ball to the left of the blue ball",
                "metaworld": "e.g. Reach the target, with a wall in the way"}
BATCH_PLACEHOLDERS = {CLEVR: "Put the red ball to the left of the blue ball\n"
                             "Move the green ball behind the cyan ball",
                      "metaworld": "Open the door\nPush the puck to the goal past the wall"}


@st.cache_data(show_spinner=False, max_entries=8)
def _video(observations: np.ndarray, actions: np.ndarray, env: str = CLEVR,
           goal_json: str | None = None, seed: int | None = None, stride: int = 1):
    if env == CLEVR:
        return side_by_side_video(observations, actions)
    import json

    return side_by_side_video(observations, actions, env=env, seed=seed, step_stride=stride,
                              goal=None if goal_json is None else json.loads(goal_json))


@st.cache_data(show_spinner=False)
def _suite(name: str, env: str = CLEVR) -> list[dict]:
    items = get_env(env).suite_items(name)
    return [it.to_dict() for it in items]


def _key(name: str, env: str) -> str:
    """A widget's key: CLEVR-Robot's as it always was, another environment's with its name."""
    return name if env == CLEVR else f"{name}_{env}"


def _parse(text: str, env: str):
    return get_env(env).parse_goal(text)


def _goal_from_dict(d: dict, env: str):
    return get_env(env).goal_from_dict(d)


def load_model(folder: Path, slot=None):
    """The model (from the process-wide registry: loaded once, in the background when the server
    started), or None after showing why it cannot be loaded. While it loads, says so in ``slot``
    (a placeholder; a new one here when None)."""
    res = preload.grounded(folder)
    slot = st.empty() if slot is None else slot
    try:
        return preload.wait(res, lambda s: slot.info(
            f":material/hourglass_top: Loading {res.label}… {s:.0f} s (once per server)"))
    except Exception as e:  # missing base LM, corrupt weights: a message, not a traceback
        st.error(f"Could not load the grounded model `{display_path(folder)}`: {e}")
        return None
    finally:
        slot.empty()


@st.fragment(run_every=1)
def _model_loading(key: str) -> None:
    """Polls a model that loads in the background; once it is loaded, reruns the page."""
    res = preload.get(key)
    if res is None or res.state != "loading":
        st.rerun()
    st.caption(f":material/hourglass_top: Loading {res.label} in the background… "
               f"{res.elapsed:.0f} s. Type a goal meanwhile.")


def model_status(folder: Path) -> None:
    """One line on the chosen model: loading (updated live), ready, or why it failed."""
    res = preload.grounded(folder, retry=False) if preload.enabled() else preload.get(
        preload.grounded_key(folder))
    if res is None:
        st.empty()  # the line's place, so that what follows keeps its place once it is loaded
        return
    if res.state == "loading":
        _model_loading(res.name)
    elif res.state == "ready":
        st.caption(f":green[:material/check_circle:] The grounded model is ready (loaded in "
                   f"{res.elapsed:.0f} s, once per server).")
    else:
        st.warning(f"Could not load the grounded model `{display_path(folder)}`: "
                   f"{res.future.exception()}")


def _pick_suite_goal(env: str = CLEVR) -> None:
    """Fill the goal text from the suite picker."""
    choice = st.session_state.get(_key("im_pick", env))
    if choice and choice != NO_PICK:
        suite, i = choice.split(":", 1)
        item = _suite(suite, env)[int(i)]
        st.session_state[_key("im_text", env)] = item["text"]
        st.session_state[_key("im_pick_item", env)] = item


# ----------------------------------------------------------------------------- showing a rollout
def show_validity(r) -> None:
    st.markdown("#### Validity")
    if r.validity is None:
        st.warning(
            "No validity checks: the goal text parses to no goal spec, and matching the goal, "
            "replaying it and cycle consistency need one. The dynamics errors below need no goal."
        )
        return
    checks = validity_checks(r.validity, r.env)
    cols = st.columns(3)
    for k, c in enumerate(checks):
        icon = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]",
                None: ":gray[:material/info:]"}[c.ok]
        cols[k % 3].metric(f"{icon} {c.name}", c.value, help=c.help, border=True)
    fails = r.validity.failure_types()
    if fails:
        st.caption("Failure types: " + ", ".join(fails))
    else:
        st.success("Fully valid: every check passed.")


def show_explanation(r, pending: bool = False) -> None:
    st.markdown("#### The LM explains its rollout")
    if pending:
        st.caption(":material/hourglass_top: The LM is explaining its rollout (cycle "
                   "consistency follows)…")
        return
    if r.explanation is None:
        st.caption("Not asked (tick “Ask the LM to explain” to check cycle consistency).")
        return
    st.info(f"“{r.explanation or '(empty)'}”")
    if getattr(r, "explain_constrained", False):
        st.caption("Decoded among the goals the rollout made true (by the goal rules on its own "
                   "states; training phrasings only): the LM chose which one, token by token. "
                   "Where the rollout made none true, it wrote freely.")
    g = r.explanation_goal
    agrees = explanation_agrees(r)
    if g is None:
        st.caption("The explanation parses to no goal.")
    else:
        st.caption("It parses to:")
        st.json(g)
    if agrees is True:
        st.success("Cycle consistent: the explanation names the intended goal.")
    elif agrees is False:
        st.warning("Cycle inconsistent: the explanation names another goal.")


def _show_video(slot, r):
    """Render (or take from the cache) the side-by-side video into ``slot``; its step frames."""
    try:
        if r.env == CLEVR:
            mp4, step_frames = _video(r.observations, r.actions)
        else:
            import json

            goal = r.reset_goal
            mp4, step_frames = _video(r.observations, r.actions, r.env,
                                      None if goal is None else json.dumps(goal, sort_keys=True),
                                      r.reset_seed, video_stride(r.steps, r.env))
    except Exception as e:  # no OpenGL, no ffmpeg: a message, the rest of the page stays
        slot.error(f"Could not render the rollout: {e}")
        return None
    with slot.container():
        st.video(mp4, loop=True, autoplay=True, muted=True)
        if r.env == CLEVR:
            st.caption("Left: the LM's imagined states. Right: the simulator replaying the same "
                       "actions from the same start.")
        else:
            n = video_stride(r.steps, r.env)
            st.caption("Left: the LM's imagined states, posed in the scene. Right: the simulator "
                       "running the same actions open loop from the same seeded reset."
                       + (f" One step in {n} is drawn." if n > 1 else ""))
    return step_frames


def show_rollout(r, key: str, explain_with=None, result_key: str | None = None,
                 explain_constrained: bool = False):
    """Video, synced step view, plots, validity and explanation of one imagined rollout.

    ``explain_with``: a model that has still to explain ``r``: it does so once the rest is shown
    (its result replaces ``st.session_state[result_key]``), among the goals the rollout made true
    with ``explain_constrained``. Returns the rollout shown."""
    st.subheader(f"“{r.text}”")
    tm = r.timings
    meta = (f"{r.steps} steps · reset seed {r.reset_seed} · category `{r.category}` · "
            f"{guide_label(r.guide, r.env, r.guide_horizon)}"
            f"{', kept off the walls' if r.guide_obstacles else ''}"
            f"{f', {r.settle} steps past the goal' if r.settle else ''} · "
            f"LM {tm.get('generate_s', 0):.1f} s · explanation {tm.get('explain_s', 0):.1f} s · "
            f"checks {tm.get('check_s', 0) + tm.get('replay_s', 0):.1f} s")
    st.caption(meta)
    if r.goal is not None:
        with st.expander("Goal spec (JSON)"):
            st.json(r.goal)
    T = r.steps
    left, right = st.columns(2)
    # A new rollout's checks show first, then its video (rendered here), then the LM's
    # explanation when it was asked for, then the plots (in their place above the checks);
    # once rendered (cached) the video is drawn in place, so that reruns do not restart it.
    video_id = hash((r.observations.tobytes(), r.actions.tobytes()))
    rendered = st.session_state.setdefault("im_rendered", set())
    video_slot = left.empty()
    step_frames = None
    if video_id in rendered:
        step_frames = _show_video(video_slot, r)
    else:
        video_slot.info("Rendering the imagined rollout and the simulator's replay…")
    with right:
        step = st.slider("Step (synced with this frame and the plots)", 0, T, 0,
                         key=f"{key}_step_{T}") if T else 0
        frame_slot = st.empty()
    figures = st.container()  # filled after the checks and the video (they matter first)
    validity_slot, explanation_slot = st.empty(), st.empty()
    with validity_slot.container():
        show_validity(r)
    with explanation_slot.container():
        show_explanation(r, pending=explain_with is not None)
    if video_id not in rendered:
        step_frames = _show_video(video_slot, r)
    if step_frames is not None:
        rendered.add(video_id)
        if r.env == CLEVR:
            nxt = f"next: {action_label(r.actions[step])}" if step < T else "final state"
            frame = step_frames[min(step, len(step_frames) - 1)]
        else:
            n = video_stride(T, r.env)
            nxt = (f"next: {get_env(r.env).action_label(r.actions[step])}" if step < T
                   else "final state")
            shown = len(step_frames) - 1 if step >= T else min(step // n, len(step_frames) - 1)
            frame = step_frames[shown]
            if n > 1 and step < T:
                nxt += f" (frame of step {min(shown * n, T)})"
        frame_slot.image(frame, caption=f"step {step} / {T} · {nxt}", width="stretch")
    def draw_figures() -> None:
        with figures:
            if r.env != CLEVR:
                _generic_figures(r, key, step)
            else:
                _clevr_figures(r, key, step, T)

    if explain_with is None:
        draw_figures()
    if explain_with is not None:  # last: the rollout, its checks and video are on screen
        st.session_state["im_shown_at"] = time.perf_counter()
        try:
            r = explain_rollout(explain_with, r, constrained=explain_constrained)
        except Exception as e:
            with explanation_slot.container():
                st.error(f"The LM could not explain its rollout: {e}")
            draw_figures()
            return r
        if result_key:
            st.session_state[result_key] = r
        with validity_slot.container():
            show_validity(r)
        with explanation_slot.container():
            show_explanation(r)
        # The plots come last, in their place above: drawing four charts takes the browser
        # longer than the explanation takes the LM, and done before it they delayed both the
        # video's first frame and the explanation (measured: bench/app_latency.py).
        draw_figures()
    return r


def _generic_figures(r, key: str, step: int) -> None:
    """The environment's generic figures (state and action channels, distance to the replay),
    two a row."""
    figs = rollout_figures(r, step)
    for row in range(0, len(figs), 2):
        cols = st.columns(2)
        for col, (name, fig, note) in zip(cols, figs[row: row + 2]):
            with col:
                st.plotly_chart(fig, key=f"{key}_{name}")
                if note:
                    st.caption(note)
    st.caption("Solid: the LM's imagined states; dotted: the simulator running its actions open "
               "loop from the same seeded reset.")


def _clevr_figures(r, key: str, step: int, T: int) -> None:
    p1, p2 = st.columns(2)
    with p1:
        st.plotly_chart(topview_figure(r.observations, step, compare=r.replay,
                                       names=("imagined", "simulator")), key=f"{key}_top")
    with p2:
        st.plotly_chart(positions_figure(r.observations, step, compare=r.replay,
                                         names=("imagined", "simulator")), key=f"{key}_pos")
    st.caption("Solid: the LM's imagined states; dotted: the simulator replaying its actions. "
               "Top view: ○ start, ● end, balls drawn to scale at the chosen step.")
    if T:
        p3, p4 = st.columns(2)
        with p3:
            st.plotly_chart(actions_figure(r.actions, step), key=f"{key}_act")
            st.caption("The ball pushed at each step; the arrow points the way it was pushed, as "
                       "seen in the top view.")
        with p4:
            st.plotly_chart(step_errors_figure(r.per_ball_errors, REALISTIC_TOLERANCE, step),
                            key=f"{key}_err")
            st.caption("Each transition checked against the simulator from the imagined state: "
                       "how far each ball lands from where the physics puts it.")


def guide_picker(env: str, key: str) -> int:
    """The decoding choice: greedy (as published) or goal-guided with some K (where the
    environment measures progress toward a goal); 0 = greedy."""
    choices = guide_choices(env)
    if len(choices) < 2:
        return 0
    return int(st.selectbox(
        "Decoding", choices, key=key, format_func=lambda k: guide_label(k, env),
        help="Greedy: the LM's likeliest action at every step, as the paper decodes. Goal-guided: "
             "of K candidate actions (discrete: the LM's K likeliest; continuous: the LM's action "
             "and K - 1 random perturbations of it), the one whose next state, as the LM itself "
             "predicts it, is closest to the goal by the goal's own rule; actions whose "
             "predicted step breaks the world's geometry (leaving the workbench, a ball through "
             "another, a gripper jump, an object rising on its own) are ruled out. The simulator "
             "is never consulted: the checks below still judge the rollout."))


def horizon_picker(env: str, key: str, guide: int) -> int:
    """The look-ahead of goal-guided decoding with continuous actions (1 = the next state; 1
    where there is no choice or decoding is greedy)."""
    choices = guide_horizon_choices(env)
    if len(choices) < 2 or not guide:
        return 1
    return int(st.selectbox(
        "Look-ahead", choices, key=key, format_func=horizon_label,
        help="What each candidate action is scored by: the next state the LM predicts, or the "
             "state several steps on, the candidate held and the LM's dynamics head iterated on "
             "its own predictions. An arm driven by a moving target point shows an action mostly "
             "in the steps after it, so one step barely tells the candidates apart."))


def obstacle_picker(env: str, key: str, guide: int) -> bool:
    """Whether goal-guided decoding keeps predicted paths off the scene's walls (False where
    there is no choice or decoding is greedy)."""
    if not guide or not obstacle_choice_available(env):
        return False
    return bool(st.checkbox(
        "Keep the predicted paths off the walls", False, key=key,
        help="Rule out candidate actions whose predicted path, look-ahead included, crosses a wall "
             "the task puts in the way (the wall's box: the scene's geometry, never the "
             "simulator). Off: what is shown is what the LM knows of walls. On: the wall's "
             "geometry steers too, so a failed replay is down to the LM's dynamics."))


SETTLE_MAX = 30


def settle_picker(key: str) -> int:
    """Steps the LM writes on after its goal first holds (0: it stops there, as published)."""
    return int(st.number_input(
        "Steps past the goal", 0, SETTLE_MAX, 0, key=key,
        help="0 stops the rollout at the first imagined state where the goal holds, as the paper "
             "does. N lets the LM write N more steps after it. Imagined states reach the success "
             "rule at its edge, where a small error in the LM's dynamics leaves the simulator's "
             "replay of the same actions just short of the goal. The extra steps are the LM's own "
             "states and actions; the simulator is never asked."))


def explanation_picker(env: str, key: str, disabled: bool = False) -> bool:
    """The explanation's decoding: free text (as published) or among the goals the rollout made
    true (where the environment names them)."""
    choices = explanation_choices(env)
    if len(choices) < 2:
        return False
    return bool(st.selectbox(
        "Explanation", choices, key=key, format_func=explanation_label, disabled=disabled,
        help="Free text: the LM writes its explanation greedily, as the paper decodes. Among the "
             "goals the rollout made true: each token is still the LM's likeliest, but only among "
             "those that continue a training phrasing of a goal that is false at s_0 and true at "
             "the end of the rollout (the goal rules on the rollout's own states, never the "
             "simulator), so the explanation is a true account and the LM picks which one."))


def imagine_live(model, text: str, seed: int, goal, max_steps: int, env: str = CLEVR,
                 live=None, guide: int = 0, guide_horizon: int = 1,
                 guide_obstacles: bool = False, settle: int = 0):
    """Generate one rollout, drawing its states and actions as the LM writes them (a top view and
    the last push) into ``live`` (a placeholder; a new one here when None); returns it checked,
    without the explanation (or None after an error).

    Each live frame is one element (an image and its caption), so that drawing it into a
    placeholder that held a container (the last result) replaces that container at once."""
    live = st.empty() if live is None else live

    def draw(t: int, observations, actions) -> None:
        live.image(topview_image(observations), width=420,
                   caption=f"The LM is imagining… step {t + 1} · last push: "
                           f"{action_label(actions[-1])}. Top view of the imagined states so "
                           "far (○ start, ● now).")

    if env != CLEVR:
        environment = get_env(env)

        def draw(t: int, observations, actions) -> None:  # noqa: F811
            live.image(environment.topview_image(observations), width=420,
                       caption=f"The LM is imagining… step {t + 1} · last action: "
                               f"{environment.action_label(actions[-1])}. The imagined x-y paths "
                               "so far, seen from above (gripper and objects).")

    try:
        # no spinner: the live view says it, and its animation would cost the browser CPU
        # (not the last step: the checked rollout replaces the live view at once)
        r = imagine_rollout(model, text, seed, goal=goal, max_steps=max_steps,
                            on_step=throttled(draw, LIVE_EVERY, final=False), guide=guide,
                            guide_horizon=guide_horizon, guide_obstacles=guide_obstacles,
                            settle=settle)
    except Exception as e:
        live.error(f"Imagination failed: {e}")
        return None
    live.caption(live_note(r))
    return r


# Seconds between two live frames (each costs the browser a redraw, on the CPU the LM needs).
# (A comment, not a docstring: Streamlit would draw a bare string on the page.)
LIVE_EVERY = 0.25


def live_note(r) -> str:
    return (f"Imagined {r.steps} steps in {r.timings.get('generate_s', 0):.1f} s, drawn live as "
            "the LM wrote them.")


# ----------------------------------------------------------------------------- page
st.title("Imagine")
_note = stage_note("imagine")
if _note:
    st.caption(_note)
st.caption(
    "A grounded LM writes a rollout (states and actions) for a goal text, from a real initial "
    "state. The simulator replays its actions beside it, and the validity checks say whether the "
    "imagination is physically and semantically sound."
)

models = find_grounded_models()
if not models:
    st.error(f"No grounded model found in assets/grounded or under {app_runs_root()}. Train one "
             "with `python -m kalm ground --data assets/data/aim4k.npz --out runs/NAME`.")
    st.stop()
labels = [m.label for m in models]
default = next((i for i, m in enumerate(models)
                if m.path.resolve() == DEFAULT_GROUNDED.resolve()), 0)
model_label = st.selectbox("Grounded model", labels, index=default, key="im_model",
                           help="The shipped model, and grounded runs under the runs folder.")
model_dir = models[labels.index(model_label)].path
env_name = folder_env(model_dir)
environment = get_env(env_name)
K = lambda name: _key(name, env_name)  # noqa: E731
if env_name != CLEVR:
    st.caption(f"This model was grounded on **{environment.title}**: goals from its suites (the "
               "wall variants among the easy ones), its own figures and checks; the simulator "
               "replays the actions open loop from the seeded reset.")
model_status(model_dir)
mode = st.radio("Mode", MODES, horizontal=True, key="im_mode")

if mode == MODES[0]:
    # the suites' texts read once a run (a cached call per option would cost 0.3 s a rerun)
    texts = {s: [d["text"] for d in _suite(s, env_name)] for s in SUITES}
    options = [NO_PICK] + [f"{s}:{i}" for s in SUITES for i in range(len(texts[s]))]

    def _fmt(o: str) -> str:
        if o == NO_PICK:
            return o
        s, i = o.split(":", 1)
        return f"{s} · {texts[s][int(i)]}"

    st.selectbox("Pick a goal from a suite (optional)", options, key=K("im_pick"),
                 format_func=_fmt, on_change=_pick_suite_goal,
                 args=() if env_name == CLEVR else (env_name,))
    text = st.text_input("Goal text", key=K("im_text"),
                         placeholder=PLACEHOLDERS.get(env_name, "e.g. " + environment.describe(
                             environment.sample_goal(np.random.default_rng(0))[0])))
    picked = st.session_state.get(K("im_pick_item"))
    goal = None
    if text.strip():
        if picked and picked["text"] == text:
            goal = _goal_from_dict(picked["goal"], env_name)
        else:
            goal = _parse(text, env_name)
        if goal is None:
            st.warning(
                "This text parses to no goal spec. The LM can still imagine a rollout for it, but "
                "without a spec there is no validity check (goal match, replay, cycle consistency)."
            )
        else:
            st.caption("Goal spec (parsed from the text):")
            st.json(goal.to_dict())
    c1, c2, c3 = st.columns(3)
    seed = c1.number_input("Initial state seed", 0, 2**31 - 2, 0, key=K("im_seed"),
                           help="The env reset seed (the first one from here whose state does "
                                "not already meet the goal).")
    if env_name == CLEVR:
        max_steps = c2.number_input("Max steps", 1, 50, 20, key="im_max_steps",
                                    help="Generation stops when the goal holds, or after this "
                                         "many pushes (a 'move' goal is always one push).")
    else:
        max_steps = c2.number_input("Max steps", 1, 2 * environment.horizon, environment.horizon,
                                    key=K("im_max_steps"),
                                    help="Generation stops when the task's success rule holds, "
                                         "or after this many steps.")
    explain = c3.checkbox("Ask the LM to explain its rollout", True, key=K("im_explain"),
                          help="Cycle consistency: does its explanation name the same goal?")
    guide = guide_picker(env_name, K("im_guide"))
    guide_horizon = horizon_picker(env_name, K("im_guide_horizon"), guide)
    guide_obstacles = obstacle_picker(env_name, K("im_guide_obstacles"), guide)
    settle = settle_picker(K("im_settle"))
    explain_constrained = explanation_picker(env_name, K("im_explain_mode"), disabled=not explain)
    explain_with = None
    result_key = K("im_result")
    clicked = st.button("Imagine", type="primary", key=K("im_go"))
    # One placeholder holds the model's wait, the live view (single elements) and then the
    # result (a container): a click replaces the last result at once. (A container written
    # into it would inherit the last result's elements, stale, until the run ends: its video
    # and charts would keep the browser busy redrawing them beside every live step, on the CPU
    # the LM needs.)
    area = st.empty()
    problem = note = None
    if clicked:
        t0 = time.perf_counter()
        try:
            clean, _ = check_goal_text(text, env_name)
        except GoalTextProblem as e:
            problem = str(e)
            area.error(problem)
        else:
            model = load_model(model_dir, area)
            if model is not None:
                st.session_state.pop(result_key, None)
                r = imagine_live(model, clean, int(seed), goal, int(max_steps), env_name, area,
                                 guide=guide, guide_horizon=guide_horizon,
                                 guide_obstacles=guide_obstacles, settle=settle)
                if r is not None:
                    st.session_state[result_key] = r
                    st.session_state["im_clicked_at"] = t0
                    explain_with = model if explain else None
                    note = live_note(r)
    result = st.session_state.get(result_key)
    if result is not None:
        with area.container():
            if problem:
                st.error(problem)
            if note:
                st.caption(note)
            st.divider()
            show_rollout(result, K("im_one"), explain_with=explain_with, result_key=result_key,
                         explain_constrained=explain_constrained)
        t0 = st.session_state.pop("im_clicked_at", None)
        if t0 is not None:
            shown = st.session_state.pop("im_shown_at", None) or time.perf_counter()
            st.session_state["im_last_total_s"] = (shown - t0, time.perf_counter() - t0)
        if "im_last_total_s" in st.session_state:
            shown_s, total_s = st.session_state["im_last_total_s"]
            st.caption(f"Last imagination: {shown_s:.1f} s from the click to the finished page "
                       "(generation, checks and video; the first one may also wait for the "
                       f"model), {total_s:.1f} s to the LM's explanation.")

else:
    src = st.radio("Goals", ("From a suite", "My goal texts"), horizontal=True, key=K("imb_src"))
    items: list = []
    if src == "From a suite":
        b1, b2 = st.columns(2)
        suite = b1.selectbox("Suite", SUITES, index=SUITES.index("easy"), key=K("imb_suite"))
        all_items = [environment.item_from_dict(d) for d in _suite(suite, env_name)]
        n = b2.number_input(f"Goals (first N of {len(all_items)})", 1,
                            min(MAX_BATCH, len(all_items)), min(4, len(all_items)),
                            key=K(f"imb_n_{suite}"))
        items = all_items[: int(n)]
    else:
        lines = st.text_area("One goal text per line", key=K("imb_lines"), height=130,
                             placeholder=BATCH_PLACEHOLDERS.get(env_name, ""))
        bad = []
        for line in (s.strip() for s in lines.splitlines()):
            if not line:
                continue
            g = _parse(line, env_name)
            if g is None:
                bad.append(line)
            else:
                items.append(environment.item_from_dict({"text": line, "goal": g.to_dict()}))
        if bad:
            st.warning("Skipped (they parse to no goal spec, and validity needs one): "
                       + "; ".join(f"“{b}”" for b in bad))
        if len(items) > MAX_BATCH:
            st.warning(f"Only the first {MAX_BATCH} goals are used.")
            items = items[:MAX_BATCH]
    c1, c2, c3 = st.columns(3)
    seed = c1.number_input("Seed", 0, 2**31 - 2, 0, key=K("imb_seed"),
                           help="Goal i starts from the reset of a seed derived from (seed, i), "
                                "as `python -m kalm imagine --seed` does.")
    if env_name == CLEVR:
        max_steps = c2.number_input("Max steps", 1, 50, 20, key="imb_max_steps")
    else:
        max_steps = c2.number_input("Max steps", 1, 2 * environment.horizon, environment.horizon,
                                    key=K("imb_max_steps"))
    explain = c3.checkbox("Ask the LM to explain each rollout", True, key=K("imb_explain"))
    batch_guide = guide_picker(env_name, K("imb_guide"))
    batch_horizon = horizon_picker(env_name, K("imb_guide_horizon"), batch_guide)
    batch_obstacles = obstacle_picker(env_name, K("imb_guide_obstacles"), batch_guide)
    batch_settle = settle_picker(K("imb_settle"))
    batch_explain_constrained = explanation_picker(env_name, K("imb_explain_mode"),
                                                   disabled=not explain)
    batch_key = K("imb_result")
    if st.button(f"Imagine {len(items)} rollout(s)", type="primary", key=K("imb_go")):
        if not items:
            st.error("No goal to imagine: pick a suite, or type goal texts that parse to a goal.")
        else:
            model = load_model(model_dir)
            if model is not None:
                bar = st.progress(0.0, text="Imagining…")
                try:
                    st.session_state[batch_key] = imagine_batch(
                        model, items, int(seed), max_steps=int(max_steps), explain=explain,
                        progress=lambda d, n: bar.progress(d / n, text=f"{d}/{n} rollouts"),
                        guide=batch_guide, explain_constrained=batch_explain_constrained,
                        guide_horizon=batch_horizon, guide_obstacles=batch_obstacles,
                        settle=batch_settle)
                    bar.empty()
                except Exception as e:
                    bar.empty()
                    st.error(f"Imagination failed: {e}")
    batch = st.session_state.get(batch_key)
    if batch:
        st.divider()
        rates = validity_rates([r.validity for r in batch])
        m = st.columns(6)
        m[0].metric("Match", f"{100 * rates['match_rate']:.0f}%")
        rt = rates["realistic_transition_rate"]
        m[1].metric("Realistic transitions", "–" if rt is None else f"{100 * rt:.0f}%")
        m[2].metric("Replay success", f"{100 * rates['replay_success_rate']:.0f}%")
        cc = rates["cycle_consistency"]
        m[3].metric("Cycle consistent", "–" if cc is None else f"{100 * cc:.0f}%")
        et = rates["explanation_true_rate"]
        m[4].metric("True explanation", "–" if et is None else f"{100 * et:.0f}%",
                    help="The explanation names a goal the rollout made true (the intended one or "
                         "another that also became true).")
        m[5].metric("Fully valid", f"{100 * rates['fully_valid_rate']:.0f}%")
        st.dataframe(batch_rows(batch), hide_index=True, key=K("imb_table"),
                     column_config={k: st.column_config.NumberColumn(format="%.4f")
                                    for k in ("dynamics_error_mean", "dynamics_error_max")})
        view = st.selectbox("View rollout", list(range(len(batch))), key=K("imb_view"),
                            format_func=lambda i: f"#{i} · {batch[i].text}")
        show_rollout(batch[view], K(f"imb_{view}"))
