"""The Compare page's logic: policies evaluated on the same goals and initial states.

Every policy is evaluated with ``kalm.evaluate.evaluate`` on the same seeded episodes, so the
numbers and the videos compare like with like. Results are cached on disk in the runs folder
(``compare-cache/``), keyed by the policy (and the files it was loaded from), the suites, the
episode count and the seed: a reload shows them at once. Slow policies (the LLM baseline) can be
evaluated in the background as ``python -m kalm evaluate --json`` jobs writing the same cache.

Nothing here imports Streamlit or a concrete environment: environments are reached through
``kalm.envs.get_env`` (their simulators, suites and replayed videos).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import kalm
from kalm import jobs
from kalm.runs import write_json_atomic

__all__ = [
    "CACHE",
    "Gathered",
    "cache_dir",
    "episode_label",
    "episode_video",
    "episodes_table",
    "evaluate_here",
    "gather",
    "job_state",
    "load_cached",
    "policy_choices",
    "policy_fingerprint",
    "results_chart",
    "results_table",
    "short_label",
    "side_by_side_episodes",
    "start_background",
    "video_path",
]

CACHE = "compare-cache"
DEFAULT_ENV = "clevr"
"""Its cache keys and CLI lines name no environment (existing caches stay valid)."""
# The code an expert or random result depends on: a change there makes cached results stale.
_CODE = ("evaluate.py", "envs", "goals", "policy")


# ----------------------------------------------------------------------------------- policies
def _grounded_models() -> list[tuple[Path, str]]:
    from kalm.ui.paths import find_grounded_models

    return [(f.path, f.label) for f in find_grounded_models()]


def _is_policy_folder(d: Path) -> bool:
    return (d / "policy" / "policy.json").is_file() or (d / "policy.json").is_file()


def _env_of_folder(d: Path, meta: str) -> str:
    """The environment a policy (``policy.json``) or grounded model (``grounded.json``) folder is
    for; folders from before environments were plug-ins are CLEVR-Robot's."""
    for f in (d / meta, d / "policy" / meta, d / "model" / meta):
        if f.is_file():
            try:
                return str(json.loads(f.read_text()).get("env") or DEFAULT_ENV)
            except (OSError, ValueError):
                return DEFAULT_ENV
    return DEFAULT_ENV


def policy_choices(env: str = DEFAULT_ENV) -> dict[str, str]:
    """spec (as ``--policy`` takes it) -> label, for every policy found for ``env``: the expert,
    random, the train run folders, ``assets/policies`` (and one folder deeper, e.g.
    ``assets/policies/metaworld/*``) and grounded LMs (``llm:DIR``) made for that environment."""
    out = {"expert": "expert (scripted oracle)", "random": "random"}
    runs = jobs.runs_dir()
    if runs.is_dir():
        for d in sorted(runs.glob("*")) + sorted(runs.glob("*/*")):
            if d.is_dir() and CACHE not in d.parts and _is_policy_folder(d) \
                    and not _is_policy_folder(d.parent) \
                    and _env_of_folder(d, "policy.json") == env:  # a train run, not its policy/
                out[str(d.resolve())] = f"trained: {d.relative_to(runs).as_posix()}"
    shipped = jobs.REPO_ROOT / "assets" / "policies"
    if shipped.is_dir():
        for d in sorted(shipped.iterdir()) + sorted(shipped.glob("*/*")):
            if d.is_dir() and _is_policy_folder(d) and not _is_policy_folder(d.parent) \
                    and _env_of_folder(d, "policy.json") == env:  # a policy, not its policy/
                out[str(d.resolve())] = f"trained: {d.relative_to(shipped.parent.parent).as_posix()}"
    for path, label in _grounded_models():
        if _env_of_folder(Path(path), "grounded.json") == env:
            out["llm:" + str(Path(path).resolve())] = f"llm: {label}"
    return out


# The Compare page opens on these shipped policies (assets/policies/NAME) when they are there:
# CLEVR-Robot's KALM policy beside the one trained on real data alone.
DEFAULT_SHIPPED = {"clevr": ("kalm", "real_only")}


def default_policies(labels: dict[str, str], env: str = DEFAULT_ENV) -> list[str]:
    """The page's first selection: the shipped KALM and real-only policies of ``env`` (CLEVR)
    when ``labels`` lists them, else the expert and the random policy."""
    shipped = jobs.REPO_ROOT / "assets" / "policies"
    specs = [str((shipped / name).resolve()) for name in DEFAULT_SHIPPED.get(env, ())]
    if specs and all(s in labels for s in specs):
        return specs
    return [s for s in ("expert", "random") if s in labels]


def short_label(spec: str, labels: dict[str, str]) -> str:
    label = labels.get(spec, spec)
    return label.split(" (")[0] if spec in ("expert", "random") else label


# ----------------------------------------------------------------------------------- cache
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


def cache_dir(spec: str, suites: list[str], episodes: int, seed: int,
              env: str = DEFAULT_ENV) -> Path:
    key = {"policy": spec, "fingerprint": policy_fingerprint(spec), "suites": suites,
           "episodes": episodes, "seed": seed}
    if env != DEFAULT_ENV:  # CLEVR-Robot's keys stay what they were (existing caches stay valid)
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


def _write_request(folder: Path, spec: str, suites: list[str], episodes: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "request.json", {"policy": spec, "suites": suites,
                                                "episodes": episodes, "seed": seed,
                                                "fingerprint": policy_fingerprint(spec)})


# ----------------------------------------------------------------------------------- evaluation
def evaluate_here(spec: str, suites: list[str], episodes: int, seed: int, folder: Path,
                  progress: Callable[[int, int], None] | None, env: str = DEFAULT_ENV) -> dict:
    """Evaluate in this process (as ``python -m kalm evaluate`` does) and cache the result."""
    from kalm.envs import get_env
    from kalm.evaluate import evaluate
    from kalm.policy import make_policy

    environment = get_env(env)
    policy = make_policy(spec, seed=seed, env=environment)
    items = [it for s in suites for it in environment.suite_items(s, seed)]
    result = evaluate(policy, items, episodes=episodes, seed=seed, progress=progress,
                      env=environment).to_dict()
    _write_request(folder, spec, suites, episodes, seed)
    write_json_atomic(folder / "result.json", result)
    return result


def evaluate_argv(spec: str, suites: list[str], episodes: int, seed: int,
                  env: str = DEFAULT_ENV) -> list[str]:
    """The ``python -m kalm evaluate`` options of one policy's background evaluation."""
    return (["--policy", spec, "--suite", ",".join(suites), "--episodes", str(episodes),
             "--seed", str(seed), "--json"] + (["--env", env] if env != DEFAULT_ENV else []))


def start_background(spec: str, suites: list[str], episodes: int, seed: int, folder: Path,
                     env: str = DEFAULT_ENV) -> dict:
    _write_request(folder, spec, suites, episodes, seed)
    # The cache folder is the app's own: resuming or replacing a failed attempt needs no prompt.
    return jobs.start_job("evaluate", evaluate_argv(spec, suites, episodes, seed, env), folder,
                          allow_existing=True, stdout_name="result.json")


def job_state(folder: Path) -> dict | None:
    if not (folder / jobs.JOB_FILE).is_file():
        return None
    try:
        return jobs.job_status(folder)
    except (jobs.JobError, OSError):
        return None


@dataclass
class Gathered:
    """What the cache holds for each chosen policy: a result, a running job, or a failure."""

    results: dict[str, dict] = field(default_factory=dict)
    running: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """spec -> the last error line of its failed or stopped background job."""

    def missing(self, chosen: Sequence[str]) -> list[str]:
        """The chosen policies with neither a result nor a running job."""
        return [s for s in chosen if s not in self.results and s not in self.running]


def gather(folders: dict[str, Path]) -> Gathered:
    """Look up every policy's cache folder (``spec -> folder``)."""
    g = Gathered()
    for spec, folder in folders.items():
        res = load_cached(folder)
        js = job_state(folder)
        if res is not None:
            g.results[spec] = res
        elif js is not None and js.get("state") == "running":
            g.running[spec] = js
        elif js is not None and js.get("state") in ("failed", "stopped"):
            tail = jobs.tail_log(folder, lines=6).strip().splitlines()
            errs = [ln for ln in tail if ln.startswith("error:")]
            g.failed[spec] = (errs[-1] if errs else (tail[-2] if len(tail) > 1 else js["state"]))
    return g


def failure_message(e: Exception) -> str:
    """What the page says of a policy that could not load or run."""
    return str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"


# ----------------------------------------------------------------------------------- videos
def episode_video(episodes: list[tuple[str, dict]], path: Path, env: str = DEFAULT_ENV) -> Path:
    """An MP4 of the episodes (label, record) side by side, replayed in the simulator from each
    record's reset seed (``Environment.replay_video_frames``)."""
    from kalm.envs import get_env
    from kalm.video import side_by_side, write_mp4

    environment = get_env(env)
    clips = [(label, environment.replay_video_frames(ep["goal"], ep["reset_seed"], ep["actions"]))
             for label, ep in episodes]
    return write_mp4(side_by_side_episodes(clips, side_by_side), path)


def side_by_side_episodes(clips: list[tuple[str, list]], side_by_side=None) -> list:
    """The frames of labelled clips next to each other, left to right (the first two labelled
    together; the shorter ones held on their last frame)."""
    if side_by_side is None:
        from kalm.video import side_by_side
    frames = clips[0][1]
    if len(clips) > 1:
        frames = side_by_side(clips[0][1], clips[1][1], labels=(clips[0][0], clips[1][0]))
        for label, more in clips[2:]:
            frames = side_by_side(frames, more, labels=(None, label))
    return frames


def video_path(folders: dict[str, Path], specs: Sequence[str], episode: int) -> Path:
    """Where the side-by-side video of episode ``episode`` of ``specs`` is cached."""
    vkey = hashlib.sha1(json.dumps([str(folders[s].name) for s in specs] + [episode]).encode())
    return jobs.runs_dir() / CACHE / "videos" / f"{vkey.hexdigest()[:16]}.mp4"


# ----------------------------------------------------------------------------------- tables
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


def shared_episodes(results: dict[str, dict]) -> tuple[dict[str, list], int, int]:
    """Every policy's episode records, how many all of them have, and the first episode whose
    outcome differs between policies (0 when none does)."""
    eps = {s: res.get("episodes", []) for s, res in results.items()}
    n = min((len(e) for e in eps.values()), default=0)
    differ = [i for i in range(n) if len({bool(e[i].get("success")) for e in eps.values()}) > 1]
    return eps, n, differ[0] if differ else 0


def episode_label(i: int, eps: dict[str, list], labels: dict[str, str]) -> str:
    """``#3 · easy · Push the red ball left · expert ✓ random ✗`` for the episode picker."""
    specs = list(eps)
    first = eps[specs[0]][i]
    marks = " ".join(f"{short_label(s, labels)} {'✓' if eps[s][i].get('success') else '✗'}"
                     for s in specs)
    return f"#{i} · {first.get('category')} · {first.get('text')} · {marks}"


def background_line(spec: str, labels: dict[str, str], folder: Path) -> str:
    """The progress text of a background evaluation."""
    return (f"{short_label(spec, labels)}: evaluating in the background "
            f"({jobs.tail_log(folder, lines=1)[-120:] or 'starting'})")
