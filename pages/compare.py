"""Compare page: policies evaluated on the same goals and initial states, side by side.

Every policy is evaluated with ``kalm.evaluate.evaluate`` on the same seeded episodes, so the
numbers and the videos compare like with like. Results are cached on disk in the runs folder
(``compare-cache/``), keyed by the policy (and the files it was loaded from), the suites, the
episode count and the seed: a reload shows them at once. Slow policies (the LLM baseline) can be
evaluated in the background as ``python -m kalm evaluate --json`` jobs writing the same cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import streamlit as st

import kalm
from kalm import jobs
from kalm.runs import write_json_atomic
from kalm.ui.navigation import ensure_app_navigation

ensure_app_navigation()  # a direct link to this page still runs inside app.py's navigation

CACHE = "compare-cache"
REFRESH_S = 2.0
# The code an expert or random result depends on: a change there makes cached results stale.
_CODE = ("evaluate.py", "envs", "goals", "policy")


# ----------------------------------------------------------------------------------- policies
def _grounded_models() -> list[tuple[Path, str]]:
    try:
        from kalm.ui.paths import find_grounded_models
    except ImportError:
        shipped = jobs.REPO_ROOT / "assets" / "grounded"
        return [(d, d.name) for d in sorted(shipped.glob("*")) if (d / "grounded.json").is_file()]
    return [(f.path, f.label) for f in find_grounded_models()]


def _is_policy_folder(d: Path) -> bool:
    return (d / "policy" / "policy.json").is_file() or (d / "policy.json").is_file()


def policy_choices() -> dict[str, str]:
    """spec (as ``--policy`` takes it) -> label, for every policy found."""
    out = {"expert": "expert (scripted oracle)", "random": "random"}
    runs = jobs.runs_dir()
    if runs.is_dir():
        for d in sorted(runs.glob("*")) + sorted(runs.glob("*/*")):
            if d.is_dir() and CACHE not in d.parts and _is_policy_folder(d) \
                    and not _is_policy_folder(d.parent):  # a train run, not also its policy/
                out[str(d.resolve())] = f"trained: {d.relative_to(runs).as_posix()}"
    shipped = jobs.REPO_ROOT / "assets" / "policies"
    if shipped.is_dir():
        for d in sorted(shipped.iterdir()):
            if d.is_dir() and _is_policy_folder(d):
                out[str(d.resolve())] = f"trained: assets/policies/{d.name}"
    for path, label in _grounded_models():
        out["llm:" + str(Path(path).resolve())] = f"llm: {label}"
    return out


def short_label(spec: str, labels: dict[str, str]) -> str:
    label = labels.get(spec, spec)
    return label.split(" (")[0] if spec in ("expert", "random") else label


def _files_stamp(paths) -> str:
    h = hashlib.sha1()
    for p in paths:
        try:
            s = p.stat()
        except OSError:
            continue
        h.update(f"{p}:{s.st_size}:{s.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def policy_fingerprint(spec: str) -> str:
    """Changes when what the policy's results depend on changes (its files, kalm's code)."""
    pkg = Path(kalm.__file__).parent
    code = []
    for name in _CODE:
        p = pkg / name
        code += sorted(p.glob("*.py")) if p.is_dir() else [p]
    stamp = kalm.__version__ + ":" + _files_stamp(code)
    if spec in ("expert", "random"):
        return stamp
    folder = Path(spec[4:] if spec.startswith("llm:") else spec)
    files = sorted(f for f in folder.rglob("*") if f.is_file() and "checkpoint" not in f.parts) \
        if folder.is_dir() else []
    return stamp + ":" + _files_stamp(files[:500])


def cache_dir(spec: str, suites: list[str], episodes: int, seed: int, env: str = "clevr") -> Path:
    key = {"policy": spec, "fingerprint": policy_fingerprint(spec), "suites": suites,
           "episodes": episodes, "seed": seed}
    if env != "clevr":  # CLEVR-Robot's keys stay what they were (existing caches stay valid)
        key["env"] = env
    key = json.dumps(key, sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(spec.removeprefix("llm:")).name).strip("-")[:40]
    slug = ("llm-" if spec.startswith("llm:") else "") + (slug or "policy")
    return jobs.runs_dir() / CACHE / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _parse_result(text: str) -> dict | None:
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) and "categories" in d else None
    except ValueError:
        pass
    for line in reversed(text.splitlines()):  # `evaluate --json` prints one object, on its own line
        if line.startswith("{"):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and "categories" in d:
                return d
    return None


def load_cached(folder: Path) -> dict | None:
    try:
        return _parse_result((folder / "result.json").read_text())
    except OSError:
        return None


def evaluate_here(spec: str, suites: list[str], episodes: int, seed: int, folder: Path,
                  progress, env: str = "clevr") -> dict:
    """Evaluate in this process (as ``python -m kalm evaluate`` does) and cache the result."""
    from kalm.envs import get_env
    from kalm.evaluate import evaluate
    from kalm.policy import make_policy

    environment = get_env(env)
    policy = make_policy(spec, seed=seed, env=environment)
    items = [it for s in suites for it in environment.suite_items(s, seed)]
    result = evaluate(policy, items, episodes=episodes, seed=seed, progress=progress,
                      env=environment).to_dict()
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "request.json", {"policy": spec, "suites": suites,
                                                "episodes": episodes, "seed": seed,
                                                "fingerprint": policy_fingerprint(spec)})
    write_json_atomic(folder / "result.json", result)
    return result


def start_background(spec: str, suites: list[str], episodes: int, seed: int, folder: Path,
                     env: str = "clevr") -> dict:
    argv = ["--policy", spec, "--suite", ",".join(suites), "--episodes", str(episodes),
            "--seed", str(seed), "--json"] + (["--env", env] if env != "clevr" else [])
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "request.json", {"policy": spec, "suites": suites,
                                                "episodes": episodes, "seed": seed,
                                                "fingerprint": policy_fingerprint(spec)})
    # The cache folder is the app's own: resuming or replacing a failed attempt needs no prompt.
    return jobs.start_job("evaluate", argv, folder, allow_existing=True, stdout_name="result.json")


def job_state(folder: Path) -> dict | None:
    if not (folder / jobs.JOB_FILE).is_file():
        return None
    try:
        return jobs.job_status(folder)
    except (jobs.JobError, OSError):
        return None


# ----------------------------------------------------------------------------------- videos
def replay_observations(ep: dict):
    """The observations of an evaluated episode, replayed from its reset seed and actions."""
    import numpy as np

    from kalm.envs.clevr import ClevrRobotEnv
    from kalm.goals.spec import goal_from_dict

    env = ClevrRobotEnv()
    try:
        env.reset(seed=int(ep["reset_seed"]), options={"goal": goal_from_dict(ep["goal"])})
        obs = [env.get_obs().copy()]
        for a in ep["actions"]:
            env.step(int(a))
            obs.append(env.get_obs().copy())
    finally:
        env.close()
    return np.asarray(obs)


def episode_video(episodes: list[tuple[str, dict]], path: Path, env: str = "clevr") -> Path:
    """An MP4 of the episodes (label, record) side by side, replayed in the simulator."""
    import numpy as np

    from kalm.render import SceneRenderer, episode_frames, side_by_side
    from kalm.video import write_mp4

    if env != "clevr":
        from kalm.ui.episodes import replay_frames

        clips = [(label, replay_frames(env, ep["goal"], ep["reset_seed"], ep["actions"]))
                 for label, ep in episodes]
        frames = clips[0][1]
        for k, (label, more) in enumerate(clips[1:]):
            frames = side_by_side(frames, more, labels=(clips[0][0] if k == 0 else None, label))
        return write_mp4(frames, path)
    with SceneRenderer() as r:
        clips = [(label, episode_frames(replay_observations(ep), np.asarray(ep["actions"]),
                                        renderer=r))
                 for label, ep in episodes]
    frames = clips[0][1]
    if len(clips) > 1:
        frames = side_by_side(clips[0][1], clips[1][1], labels=(clips[0][0], clips[1][0]))
        for label, more in clips[2:]:
            frames = side_by_side(frames, more, labels=(None, label))
    return write_mp4(frames, path)


# ----------------------------------------------------------------------------------- figures
def results_table(results: dict[str, dict], labels: dict[str, str]):
    import pandas as pd

    rows = []
    for spec, res in results.items():
        row = {"policy": short_label(spec, labels)}
        rates = []
        for cat, m in res["categories"].items():
            row[cat] = f"{100 * m['success_rate']:.1f} ± {100 * m['stderr']:.1f}"
            rates.append(m["success_rate"])
        row["mean"] = f"{100 * sum(rates) / len(rates):.1f}" if rates else ""
        row["episodes / category"] = res.get("episodes_per_category")
        row["seconds"] = round(float(res.get("wall_time_s", 0.0)), 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("policy")


def results_chart(results: dict[str, dict], labels: dict[str, str]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for spec, res in results.items():
        cats = list(res["categories"])
        fig.add_trace(go.Bar(
            name=short_label(spec, labels), x=cats,
            y=[100 * res["categories"][c]["success_rate"] for c in cats],
            error_y=dict(type="data", array=[100 * res["categories"][c]["stderr"] for c in cats],
                         visible=True),
            text=[f"{100 * res['categories'][c]['success_rate']:.0f}%" for c in cats],
            textposition="outside", cliponaxis=False,
            hovertemplate="%{x}: %{y:.1f}%<extra>%{fullData.name}</extra>",
        ))
    fig.update_layout(barmode="group", height=380, yaxis=dict(title="success (%)", range=[0, 112]),
                      xaxis_title="goal category", margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=1.1))
    return fig


def episodes_table(results: dict[str, dict], labels: dict[str, str], failures_only: bool):
    import pandas as pd

    rows = []
    for spec, res in results.items():
        for i, ep in enumerate(res.get("episodes", [])):
            if failures_only and ep.get("success"):
                continue
            rows.append({"policy": short_label(spec, labels), "episode": i,
                         "category": ep.get("category"), "goal": ep.get("text"),
                         "success": bool(ep.get("success")), "length": ep.get("steps")})
    return pd.DataFrame(rows, columns=["policy", "episode", "category", "goal", "success",
                                       "length"])


# ----------------------------------------------------------------------------------- page
st.title("Compare")
st.caption("Policies on the same goals and initial states: success per goal category, "
           "episode by episode, and side by side in the simulator.")

from kalm.envs import SUITES, env_names, get_env  # noqa: E402

ENVS = env_names()
env_name = st.selectbox("Environment", ENVS, format_func=lambda n: get_env(n).title,
                        key="cmp-env")
labels = policy_choices()
if env_name != "clevr":  # trained and LLM policies exist for CLEVR-Robot only (issue 17)
    labels = {k: v for k, v in labels.items() if k in ("expert", "random")}
    st.caption(f"On {get_env(env_name).title}: the expert and the random policy. Trained and "
               "grounded-LM policies for it come with its grounding and offline RL.")
c1, c2 = st.columns([3, 2])
with c1:
    chosen = st.multiselect("Policies", list(labels), default=["expert", "random"],
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

folders = {}
try:
    folders = {spec: cache_dir(spec, list(suites), episodes, seed, env_name) for spec in chosen}
except (OSError, ValueError) as e:
    st.error(f"could not prepare the cache in the runs folder: {e}")
    st.stop()
results: dict[str, dict] = {}
running: dict[str, dict] = {}
failed: dict[str, str] = {}
for spec, folder in folders.items():
    res = load_cached(folder)
    js = job_state(folder)
    if res is not None:
        results[spec] = res
    elif js is not None and js.get("state") == "running":
        running[spec] = js
    elif js is not None and js.get("state") in ("failed", "stopped"):
        tail = jobs.tail_log(folder, lines=6).strip().splitlines()
        errs = [ln for ln in tail if ln.startswith("error:")]
        failed[spec] = (errs[-1] if errs else (tail[-2] if len(tail) > 1 else js["state"]))
missing = [s for s in chosen if s not in results and s not in running]

if missing:
    names = ", ".join(short_label(s, labels) for s in missing)
    if st.button(f"Evaluate {names}", type="primary", key="cmp-run"):
        for spec in missing:
            name = short_label(spec, labels)
            if background:
                try:
                    running[spec] = start_background(spec, list(suites), episodes, seed,
                                                     folders[spec], env_name)
                    failed.pop(spec, None)
                except (jobs.JobError, OSError) as e:
                    st.error(f"{name}: {e}")
                continue
            bar = st.progress(0.0, text=f"{name}: starting")

            def progress(done, total, bar=bar, name=name):
                bar.progress(done / total, text=f"{name}: {done}/{total} episodes")

            try:
                results[spec] = evaluate_here(spec, list(suites), episodes, seed, folders[spec],
                                              progress, env_name)
                failed.pop(spec, None)
            except Exception as e:  # a policy that cannot load or run: a message, not a traceback
                failed[spec] = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            bar.empty()
    elif results:
        st.caption(f"Not evaluated yet with these settings: {names}.")
for spec, msg in failed.items():
    st.warning(f"**{short_label(spec, labels)}** is not available: {msg}")


@st.fragment(run_every=REFRESH_S)
def background_jobs() -> None:
    done = False
    for spec in list(running):
        js = job_state(folders[spec])
        if js is None or js.get("state") != "running":
            done = True
            continue
        p = js.get("progress")
        st.progress(p or 0.0, text=f"{short_label(spec, labels)}: evaluating in the background "
                                   f"({jobs.tail_log(folders[spec], lines=1)[-120:] or 'starting'})")
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
st.dataframe(results_table(results, labels))
st.plotly_chart(results_chart(results, labels), key="cmp-chart")
st.caption("Success rate per goal category, error bars ± one standard error "
           f"(episodes per category: {episodes}, seed {seed}). Cached in "
           f"`{jobs.runs_dir() / CACHE}`.")

st.header("Side by side")
specs = list(results)
eps = {s: results[s].get("episodes", []) for s in specs}
n = min(len(e) for e in eps.values())
if n == 0:
    st.info("These results hold no episodes to replay.")
else:
    def ep_label(i: int) -> str:
        first = eps[specs[0]][i]
        marks = " ".join(f"{short_label(s, labels)} {'✓' if eps[s][i].get('success') else '✗'}"
                         for s in specs)
        return f"#{i} · {first.get('category')} · {first.get('text')} · {marks}"

    differ = [i for i in range(n) if len({bool(eps[s][i].get("success")) for s in specs}) > 1]
    default = differ[0] if differ else 0
    c1, c2 = st.columns([4, 1])
    with c1:
        i = st.selectbox("Episode (same goal and initial state for every policy)", range(n),
                         index=default, format_func=ep_label, key="cmp-episode")
    vkey = hashlib.sha1(json.dumps([str(folders[s].name) for s in specs] + [i]).encode()).hexdigest()
    video = jobs.runs_dir() / CACHE / "videos" / f"{vkey[:16]}.mp4"
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
                episode_video([(short_label(s, labels), eps[s][i]) for s in specs[:4]], video,
                              env_name)
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
table = episodes_table(results, labels, only_failures)
if table.empty:
    st.success("No failures." if only_failures else "No episodes.")
else:
    st.dataframe(table, hide_index=True)
