"""Offline RL of a goal-conditioned policy on real and imagined rollouts (KALM's last stage).

``train_policy(cfg, out)`` trains (or resumes) a run in the folder ``out``:

    config.json      the TrainConfig (the same dataclass drives the CLI and the app)
    status.json      state, step / total, message (RunDir; the app polls it)
    data.json        where the data came from (SHA-1 of each file), transitions per source, how
                     many imagined rollouts each filter dropped, number of goal texts
    metrics.csv      one row per epoch: step, mean losses, steps/s, the imagined share of the
                     batches, and (with eval_episodes) the simulator success rate
    checkpoint/      the latest checkpoint: state.pt (networks, optimizers, torch RNG; read with
                     torch.load(weights_only=True)) and trainer.json (step, sampler RNG)
    policy/          the final policy: policy.json + policy.safetensors (``kalm.rl.policy``)
    snapshots/       policies of the last ``SNAPSHOTS_KEPT`` (5) epoch ends, ``step-<N>/`` each a
                     loadable policy folder like ``policy/`` (older ones pruned): the paper scores
                     the mean of the last 5 checkpoints (``kalm.rl.policy.snapshot_dirs``)

The environment is ``cfg.env`` (the CLI's ``--env``): its state size and action spec shape the
data and the networks. Discrete algorithms train on discrete actions (CLEVR-Robot), continuous
ones (bc, cql, iql, td3_plus_bc, awac) on continuous actions (Meta-World), clipped to the action
spec's [low, high]; data of another environment, or an algorithm of the other kind, is refused.

Batches come from ``kalm.rl.data.MixedSampler``: ``imagined_ratio`` of each batch is imagined
transitions (default 0.5, KALM's 1:1), the rest real. The observation is ``[state | goal text
embedding]`` and the networks use ``kalm.rl.encoder.GoalEncoderFactory``.

Rerunning the same command resumes from ``checkpoint/`` (``steps``, ``max_minutes`` and
``eval_episodes`` may change; anything else, or changed data files, is refused with a message).
A finished run whose ``steps`` were not raised is left as it is. ``max_minutes`` stops early
with a checkpoint and a usable policy; Ctrl-C saves a checkpoint and stops.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kalm.rl.config import (LEGACY_DEFAULTS, RESUMABLE_FIELDS, TrainConfig, check_algo_for,
                             parse_filter)
from kalm.runs import RunDir, read_status, replace_dir, write_json_atomic

__all__ = ["train_policy", "prepare_data", "TrainData", "SNAPSHOTS_KEPT"]

SNAPSHOTS_KEPT = 5
"""Policy snapshots kept of the last epoch ends (``OUT/snapshots/step-<N>/``)."""


class TrainData:
    """The sampler plus what ``data.json`` records about the sources."""

    def __init__(self, sampler, info: dict, embedder) -> None:
        self.sampler = sampler
        self.info = info
        self.embedder = embedder


def prepare_data(cfg: TrainConfig, embedder=None,
                 status: Callable[[str], None] | None = None) -> TrainData:
    """Load, filter and embed the data of ``cfg``; returns the mixed sampler and the data info."""
    from kalm.rl.data import (
        MixedSampler,
        TransitionTable,
        file_fingerprint,
        filter_imagined,
        load_imagined_sources,
        load_real,
    )
    from kalm.rl.embed import make_embedder, with_mentions

    from kalm.envs import get_env

    say = status or (lambda msg: None)
    if not cfg.real:
        raise ValueError("a real dataset is needed (--real PATH)")
    env = get_env(cfg.env)
    say("loading data")
    real = load_real(cfg.real)
    _check_env(cfg, real.env, f"the real dataset {cfg.real}")
    check_algo_for(cfg.algo, env)
    real_eps = [ep for ep in real.episodes if ep.length > 0]
    sources = load_imagined_sources(cfg.imagined)
    require = parse_filter(cfg.filter)
    im_eps, im_info = [], []
    for f, ds in sources:
        _check_env(cfg, ds.env, f"the imagined rollouts {f}")
        kept, counts = filter_imagined(ds.episodes, require)
        im_eps += kept
        im_info.append({"path": str(f), "sha1": file_fingerprint(f), **counts,
                        "transitions": sum(ep.length for ep in kept)})
    if sources and not im_eps:
        raise ValueError(f"no imagined rollout is left after --filter {cfg.filter} (and dropping "
                         "empty or non-finite ones); loosen the filter or drop --imagined")

    augmented = {}
    if cfg.augment:
        say(f"adding {cfg.augment} relabelled copies of every episode")
        rng = np.random.default_rng([cfg.seed, 7919])
        real_eps, augmented["real"] = augment_episodes(env, real_eps, cfg.augment, rng)
        im_eps, augmented["imagined"] = augment_episodes(env, im_eps, cfg.augment, rng)
    emb = embedder if embedder is not None else make_embedder(cfg.embedder)
    emb = with_mentions(emb, env, cfg.mentions)
    texts = list(dict.fromkeys(ep.text for ep in (*real_eps, *im_eps)))
    say(f"embedding {len(texts)} goal texts with {emb.name}")
    Z = emb.embed(texts)
    index = {t: i for i, t in enumerate(texts)}
    table = dict(reward=cfg.reward, state_dim=env.state.dim, action=env.action)
    real_table = TransitionTable.from_episodes(real_eps, [index[ep.text] for ep in real_eps], **table)
    im_table = (TransitionTable.from_episodes(im_eps, [index[ep.text] for ep in im_eps], **table)
                if im_eps else None)
    from kalm.rl.config import ALGOS

    sequence = ALGOS[cfg.algo].sequence
    if sequence:
        from kalm.rl.data import TrajectorySampler

        sampler = TrajectorySampler(real_table, im_table, Z, cfg.imagined_ratio, seed=cfg.seed,
                                    context=cfg.context_size)
    else:
        sampler = MixedSampler(real_table, im_table, Z, cfg.imagined_ratio, seed=cfg.seed)
    info = {
        "real": {"path": str(cfg.real), "sha1": file_fingerprint(cfg.real),
                 "episodes": len(real_eps), "transitions": len(real_table)},
        "imagined": im_info,
        "imagined_transitions": len(im_table) if im_table is not None else 0,
        "imagined_ratio_used": sampler.ratio,
        "goal_texts": len(texts),
        "embedder": emb.name,
        "goal_dim": int(emb.dim),
        "reward": cfg.reward,
        "filter": cfg.filter,
    }
    if augmented:
        info["augmented"] = augmented
    if sequence:
        # the return a Decision Transformer is asked for when it acts: the median return of the
        # real episodes that end in success (all real episodes when none does)
        info["target_return"] = dt_target_return(real_table)
    return TrainData(sampler, info, emb)


def augment_episodes(env, episodes: list, copies: int, rng: np.random.Generator) -> tuple[list, int]:
    """``episodes`` followed by ``copies`` relabelled copies of each (``env.relabel_episode``: a
    symmetry of the environment; rewards and flags stay, as the symmetry keeps them); returns
    them and how many copies were added (episodes the symmetry does not apply to get none)."""
    from dataclasses import replace

    out = list(episodes)
    for ep in episodes:
        for _ in range(copies):
            new = env.relabel_episode(ep.text, ep.goal, ep.observations, ep.actions, rng)
            if new is None:
                break
            text, goal, obs, actions = new
            out.append(replace(ep, text=text, goal=goal, observations=obs, actions=actions,
                               info={**ep.info, "relabelled": True}))
    return out, len(out) - len(episodes)


def dt_target_return(table) -> float:
    """The median return of ``table``'s episodes that end in success (a terminal transition);
    of all its episodes when none does."""
    returns = table.episode_returns()
    ends = np.flatnonzero(table.terminals > 0)
    if len(ends):
        starts = ends - table.steps[ends]
        returns = table.returns_to_go[starts]
    return float(np.median(returns)) if len(returns) else 0.0


def _check_env(cfg: TrainConfig, data_env: str, what: str) -> None:
    if data_env != cfg.env:
        raise ValueError(f"{what} holds {data_env} episodes but this run trains for {cfg.env}; "
                         f"pass --env {data_env} (or data collected with --env {cfg.env})")


def _check_resume(run: RunDir, cfg: TrainConfig) -> None:
    old_raw = {**LEGACY_DEFAULTS, **json.loads((run.path / "config.json").read_text())}
    new = cfg.to_dict()
    diff = [k for k in new if k not in RESUMABLE_FIELDS and old_raw.get(k) != new[k]]
    if diff:
        what = "; ".join(f"{k}: {old_raw.get(k)!r} -> {new[k]!r}" for k in diff[:4])
        raise ValueError(f"{run.path} holds a train run with another config ({what}); rerun with "
                         "the same options to resume, use another --out, or add --restart")


def _save_checkpoint(run: RunDir, algo, sampler, step: int, epoch_rows: int) -> None:
    from kalm.rl.algos import save_training_state

    tmp = run.path / ".checkpoint.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_training_state(algo, tmp / "state.pt", {"step": step})
    trainer = {"step": step, "metric_rows": epoch_rows,
               "sampler_rng": sampler.rng.bit_generator.state}
    tokens = getattr(algo.impl, "_tokens", None)  # a Decision Transformer's learning-rate clock
    if tokens is not None:
        trainer["dt_tokens"] = int(tokens)
    write_json_atomic(tmp / "trainer.json", trainer)
    replace_dir(tmp, run.path / "checkpoint")


def _save_policy(run: RunDir, algo, cfg: TrainConfig, data: TrainData, step: int,
                 final: Path | None = None) -> Path:
    """Write a loadable policy folder at ``final`` (default ``OUT/policy``), atomically."""
    import datetime as dt

    from kalm.rl.algos import save_weights
    from kalm.rl.policy import POLICY_FORMAT, POLICY_VERSION

    final = final if final is not None else run.path / "policy"
    tmp = final.parent / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    from kalm.envs import get_env

    env = get_env(cfg.env)
    meta = {
        "format": POLICY_FORMAT, "format_version": POLICY_VERSION, "algo": cfg.algo,
        "env": env.name, "discrete": env.action.discrete,
        "observation_size": env.state.dim + data.info["goal_dim"],
        "action_size": env.action.size, "state_dim": env.state.dim,
        **({} if env.action.discrete else {"action_low": env.action.low,
                                           "action_high": env.action.high}),
        "goal_dim": data.info["goal_dim"], "embedder": cfg.embedder, "step": step,
        **({"target_return": data.info["target_return"]} if "target_return" in data.info else {}),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
    }
    save_weights(algo, tmp / "policy.safetensors", {"algo": cfg.algo, "step": str(step)})
    write_json_atomic(tmp / "policy.json", meta)
    replace_dir(tmp, final)
    return final


def _save_snapshot(run: RunDir, algo, cfg: TrainConfig, data: TrainData, step: int,
                   keep: int) -> None:
    """Save the policy at an epoch end as ``snapshots/step-<step>/``; keep the last ``keep``."""
    from kalm.rl.policy import snapshot_dirs

    if keep < 1:
        return
    root = run.path / "snapshots"
    _save_policy(run, algo, cfg, data, step, final=root / f"step-{step}")
    for old in snapshot_dirs(run.path, last=0)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _evaluate(algo, data: TrainData, cfg: TrainConfig) -> float:
    from kalm.envs import get_env
    from kalm.evaluate import evaluate
    from kalm.rl.policy import TrainedPolicy

    env = get_env(cfg.env)
    names = list(env.suites) if "all" in cfg.eval_suite.split(",") else cfg.eval_suite.split(",")
    items = [it for n in names for it in env.suite_items(n, cfg.seed)]
    res = evaluate(TrainedPolicy(algo, data.embedder, env=env.name,
                                 target_return=data.info.get("target_return"),
                                 reward=cfg.reward), items,
                   episodes=cfg.eval_episodes, seed=cfg.seed, env=env)
    rates = [m["success_rate"] for m in res.categories.values()]
    return float(np.mean(rates))


def train_policy(
    cfg: TrainConfig,
    out: str | Path,
    progress: bool = True,
    resume: bool = True,
    device: str = "cpu",
    embedder=None,
    on_epoch: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_snapshots: int = SNAPSHOTS_KEPT,
) -> dict[str, Any]:
    """Train (or resume) a policy into the run folder ``out`` (see the module docstring).

    ``embedder``: an embedder object to use instead of building ``cfg.embedder`` (tests).
    ``on_epoch``: called with each metrics row. ``should_stop``: polled every step; True stops
    like the time budget (checkpoint + policy). ``keep_snapshots``: policy snapshots kept of the
    last epoch ends (``snapshots/step-<N>/``; 0 = none). Returns a summary dict (out, step, steps,
    state, message, policy, snapshots, data).
    """
    import d3rlpy

    from kalm.rl.algos import build_algo, load_training_state

    cfg.validate()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; --out must be a run folder")
    prev = read_status(out) if out.exists() else None
    if prev and prev.get("stage") not in (None, "train"):
        raise ValueError(f"{out} is a {prev['stage']} run; choose another --out for training")
    run = RunDir(out, "train")
    ck = run.path / "checkpoint"
    resuming = resume and (ck / "trainer.json").exists() and (run.path / "config.json").exists()
    if resuming:
        _check_resume(run, cfg)
    else:
        for name in ("checkpoint", "policy", "snapshots", ".checkpoint.tmp", ".policy.tmp"):
            if (run.path / name).exists():
                shutil.rmtree(run.path / name)
        for name in ("metrics.csv", "data.json"):
            (run.path / name).unlink(missing_ok=True)
    run.save_config(cfg.to_dict())
    write_json_atomic(run.path / "command.json", {"command": shlex.join(sys.argv)})

    def say(msg: str, step: int = 0) -> None:
        run.status("running", step, cfg.steps, msg)

    try:
        data = prepare_data(cfg, embedder, status=say)
        if resuming and (run.path / "data.json").exists():
            old = json.loads((run.path / "data.json").read_text())
            old_sha = [old["real"]["sha1"], *[s["sha1"] for s in old["imagined"]]]
            new_sha = [data.info["real"]["sha1"], *[s["sha1"] for s in data.info["imagined"]]]
            if old_sha != new_sha:
                raise ValueError(f"the data files changed since {out} was started; use another "
                                 "--out, or add --restart to train again from scratch")
        write_json_atomic(run.path / "data.json", data.info)

        d3rlpy.seed(cfg.seed)
        from kalm.envs import get_env

        env = get_env(cfg.env)
        algo = build_algo(cfg, data.sampler.observation_size, env.action.size,
                          discrete=env.action.discrete, device=device, state_dim=env.state.dim,
                          action_range=(env.action.low, env.action.high))
        step, rows = 0, 0
        if resuming:
            st = load_training_state(algo, ck / "state.pt")
            tr = json.loads((ck / "trainer.json").read_text())
            step, rows = int(tr["step"]), int(tr.get("metric_rows", 0))
            assert step == int(st["step"])
            data.sampler.rng.bit_generator.state = tr["sampler_rng"]
            if "dt_tokens" in tr and hasattr(algo.impl, "_tokens"):
                algo.impl._tokens = int(tr["dt_tokens"])
            algo.set_grad_step(step)
        if step >= cfg.steps and (run.path / "policy" / "policy.json").exists():
            msg = f"already trained to step {step}; raise --steps to train on"
            run.status("done", step, cfg.steps, msg)
            return {"out": str(out), "step": step, "steps": cfg.steps, "state": "done",
                    "message": msg, "policy": str(run.path / "policy"),
                    "snapshots": _snapshot_list(run), "data": data.info}
    except KeyboardInterrupt:
        run.status("stopped", 0, cfg.steps, "interrupted while loading; rerun to start")
        raise
    except Exception as e:
        run.status("failed", 0, cfg.steps, f"{type(e).__name__}: {e}")
        raise

    bar = None
    if progress and step < cfg.steps:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.algo}", unit="step")
    t_start = time.time()
    last_status = 0.0
    sums: dict[str, float] = {}
    n_in_epoch, imagined_in_epoch, t_epoch = 0, 0, time.time()
    state, message = "done", "finished"
    interrupted = False
    saved_at = step

    def log_row(final_partial: bool = False) -> None:
        nonlocal sums, n_in_epoch, imagined_in_epoch, t_epoch, rows
        if n_in_epoch == 0:
            return
        dt_s = max(time.time() - t_epoch, 1e-9)
        row: dict[str, Any] = {
            "epoch": -(-step // cfg.steps_per_epoch), "step": step,
            **{k: round(v / n_in_epoch, 6) for k, v in sums.items()},
            "imagined_fraction": round(imagined_in_epoch / (n_in_epoch * cfg.batch_size), 4),
            "steps_per_s": round(n_in_epoch / dt_s, 2),
            "elapsed_s": round(time.time() - t_start, 1),
            "eval_success": "",
        }
        if cfg.eval_episodes and not final_partial:
            run.status("running", step, cfg.steps, f"evaluating at step {step}")
            row["eval_success"] = round(_evaluate(algo, data, cfg), 4)
        run.log_metrics(row)
        rows += 1
        if on_epoch is not None:
            on_epoch(row)
        sums, n_in_epoch, imagined_in_epoch, t_epoch = {}, 0, 0, time.time()

    try:
        while step < cfg.steps:
            batch = data.sampler.sample(cfg.batch_size)
            loss = algo.update(batch)
            step += 1
            n_in_epoch += 1
            imagined_in_epoch += data.sampler.last_imagined
            for k, v in loss.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if bar is not None:
                bar.update(1)
            if step % cfg.steps_per_epoch == 0 or step == cfg.steps:
                log_row()
                # the snapshot first: a stop between the two redoes this epoch, rewriting it
                _save_snapshot(run, algo, cfg, data, step, keep_snapshots)
                _save_checkpoint(run, algo, data.sampler, step, rows)
                saved_at = step
                if bar is not None:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in list(loss.items())[:2]})
            now = time.time()
            if now - last_status > 1.0:
                main_loss = next(iter(loss.items()), ("loss", float("nan")))
                run.status("running", step, cfg.steps, f"{main_loss[0]} {main_loss[1]:.4f}")
                last_status = now
            if step < cfg.steps and cfg.max_minutes and (now - t_start) / 60 >= cfg.max_minutes:
                state, message = "done", (f"time budget of {cfg.max_minutes} min reached at step "
                                          f"{step}; rerun the same command to continue")
                break
            if step < cfg.steps and should_stop is not None and should_stop():
                state, message = "stopped", f"stopped at step {step}; rerun the same command to continue"
                break
    except KeyboardInterrupt:
        interrupted = True
        state, message = "stopped", f"interrupted at step {step}; rerun the same command to resume"
    except Exception as e:
        if bar is not None:
            bar.close()
        run.status("failed", step, cfg.steps, f"{type(e).__name__}: {e}")
        raise
    finally:
        if bar is not None:
            bar.close()
    if step % cfg.steps_per_epoch and step < cfg.steps:
        log_row(final_partial=True)
    if saved_at != step:
        _save_checkpoint(run, algo, data.sampler, step, rows)
    policy = _save_policy(run, algo, cfg, data, step)
    run.status(state, step, cfg.steps, message)
    if interrupted:
        raise KeyboardInterrupt
    return {"out": str(out), "step": step, "steps": cfg.steps, "state": state, "message": message,
            "policy": str(policy), "snapshots": _snapshot_list(run), "data": data.info}


def _snapshot_list(run: RunDir) -> list[str]:
    from kalm.rl.policy import snapshot_dirs

    return [str(p) for p in snapshot_dirs(run.path, last=0)]
