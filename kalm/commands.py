"""The commands of the pipeline's stages (``collect``, ``evaluate``, ``ground``, ``imagine``,
``train``): their functions and parser. ``kalm.cli`` adds ``reproduce``, which runs these
in-process (``kalm.reproduce`` imports this module, never ``kalm.cli``: no import circle).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["CLIError", "add_stage_commands", "add_env_option", "build_parser"]


class CLIError(Exception):
    """An error to show the user as one line, without a traceback."""


def _env(args: argparse.Namespace, stage: str | None = None):
    """The environment ``--env`` names, checked to have ``stage`` built."""
    from kalm.envs import get_env

    env = get_env(getattr(args, "env", None))
    if stage is not None:
        try:
            env.require_stage(stage)
        except ValueError as e:
            raise CLIError(str(e)) from None
    return env


def _load_items(suite: str | None, goals: str | None, seed: int, limit: int | None = None,
                env=None):
    from kalm.envs import get_env

    env = get_env(env)
    suites = env.suites
    if suite:
        names = suite.split(",")
        bad = [n for n in names if n not in suites and n != "all"]
        if bad:
            raise CLIError(f"unknown suite {bad[0]!r}; choose from {', '.join(suites)} or 'all'")
        if "all" in names:
            names = list(suites)
        items = [it for n in names for it in env.suite_items(n, seed)]
    else:
        items = env.read_goals_file(goals)
    return items[:limit] if limit else items


def cmd_collect(args: argparse.Namespace) -> int:
    from kalm.data.collect import collect_dataset
    from kalm.data.episodes import dataset_summary

    if args.episodes < 1:
        raise CLIError("--episodes must be at least 1")
    env = _env(args, "collect")
    if args.noise is None:
        args.noise = env.default_noise
    if not 0.0 <= args.noise <= 1.0:
        raise CLIError("--noise must be in [0, 1]")
    ds = collect_dataset(
        env=env,
        episodes=args.episodes,
        seed=args.seed,
        out=Path(args.out),
        suite=args.suite,
        noise=args.noise,
        expert=args.expert,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    summary = dataset_summary(ds)
    if args.json:
        print(json.dumps({"out": str(args.out), **summary}))
    else:
        print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kalm.evaluate import evaluate
    from kalm.policy import make_policy

    env = _env(args, "evaluate")
    items = _load_items(args.suite, args.goals, args.seed, args.limit, env)
    try:
        policy = make_policy(args.policy, seed=args.seed, env=env)
    except ValueError as e:
        raise CLIError(str(e)) from e
    result = evaluate(
        policy,
        items,
        env=env,
        episodes=args.episodes,
        seed=args.seed,
        video_dir=args.video,
        videos_per_category=args.video_episodes,
        progress=not (args.json or args.quiet),
    )
    if args.json:
        print(result.to_json())
    else:
        print(result.table())
        print(f"({result.wall_time_s:.1f} s)")
    return 0


def cmd_ground(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from kalm.llm.config import PRESETS, GroundConfig
    from kalm.llm.train import train_grounding

    env = _env(args, "ground")
    if not Path(args.data).exists():
        raise CLIError(f"dataset {args.data} not found; make one with "
                       f"`python -m kalm collect --env {env.name} --episodes 4000 --out PATH`")
    values = {**PRESETS[args.preset], **env.grounding_defaults}
    for f in fields(GroundConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name != "env":
            values[f.name] = v
    values["data"] = args.data
    values["env"] = env.name
    cfg = GroundConfig(**values).validate()
    train_grounding(cfg, args.out, progress=not args.quiet, resume=not args.restart)
    print(f"grounded model in {Path(args.out) / 'model'}")
    return 0


def cmd_imagine(args: argparse.Namespace) -> int:
    from kalm.imagine.generate import imagine
    from kalm.llm.train import load_grounded

    env = _env(args, "imagine")
    if args.per_goal < 1:
        raise CLIError("--per-goal must be at least 1")
    if args.batch_size < 1:
        raise CLIError("--batch-size must be at least 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise CLIError("--max-steps must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be at least 1")
    if args.videos < 0:
        raise CLIError("--videos must be 0 or more")
    if args.replan < 0:
        raise CLIError("--replan must be 0 or more")
    if args.guide < 0:
        raise CLIError("--guide must be 0 or more")
    if args.guide_horizon < 1:
        raise CLIError("--guide-horizon must be at least 1")
    if args.guide_obstacles and args.guide < 2:
        raise CLIError("--guide-obstacles rules out guided candidates: pass --guide K (K >= 2)")
    if args.settle < 0:
        raise CLIError("--settle must be 0 or more")
    if args.explain_constrained and args.no_explain:
        raise CLIError("--explain-constrained shapes the explanations; --no-explain skips them")
    if not Path(args.model).exists():
        raise CLIError(f"model folder {args.model} not found; ground one with "
                       "`python -m kalm ground --data PATH --out runs/NAME`")
    items = _load_items(args.suite, args.goals, args.seed, args.limit, env=env)
    model = load_grounded(args.model)
    if model.env_name != env.name:
        raise CLIError(f"{args.model} was grounded on {model.env_name}; pass --env {model.env_name}")
    source = {"model": str(args.model), "suite": args.suite, "goals": args.goals,
              "limit": args.limit}
    ds, _ = imagine(model, items, per_goal=args.per_goal, seed=args.seed, out=Path(args.out),
                    batch_size=args.batch_size, max_steps=args.max_steps,
                    explain=not args.no_explain, progress=not (args.json or args.quiet),
                    overwrite=args.overwrite, source=source, replan=args.replan,
                    guide=args.guide, explain_constrained=args.explain_constrained,
                    guide_horizon=args.guide_horizon, guide_obstacles=args.guide_obstacles,
                    settle=args.settle)
    if args.videos:
        from kalm.imagine.render import render_examples

        render_examples(ds, Path(args.out) / "videos", per_category=args.videos)
    summary = json.loads((Path(args.out) / "summary.json").read_text())
    if args.json:
        print(json.dumps({"out": str(args.out), **summary}))
    else:
        def pct(v):
            return "-" if v is None else f"{100 * v:.1f}%"

        print(f"{'category':<12} {'rollouts':>8} {'match':>7} {'realistic':>9} {'off-bench':>9} "
              f"{'replay':>7} {'cycle':>7} {'true expl.':>10}")
        rows = {**summary["categories"], "overall": summary["overall"]}
        for cat, m in rows.items():
            print(f"{cat:<12} {m['rollouts']:>8} {pct(m['match_rate']):>7} "
                  f"{pct(m['realistic_transition_rate']):>9} {pct(m['out_of_workbench_rate']):>9} "
                  f"{pct(m['replay_success_rate']):>7} {pct(m['cycle_consistency']):>7} "
                  f"{pct(m.get('explanation_true_rate')):>10}")
        rate = summary["generation"]["rollouts_per_s"]
        print(f"wrote {args.out}" + (f" ({rate:.2f} rollouts/s)" if rate else ""))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from kalm.rl.config import TrainConfig

    env = _env(args, "train")
    flag = "" if env.name == "clevr" else f" --env {env.name}"
    if not Path(args.real).exists():
        raise CLIError(f"real dataset {args.real} not found; make one with "
                       f"`python -m kalm collect{flag} --episodes 4000 --out PATH`")
    if Path(args.real).is_dir():
        raise CLIError(f"--real {args.real} is a folder; pass a dataset file (.npz)")
    for p in args.imagined or []:
        if not Path(p).exists():
            raise CLIError(f"imagined rollouts {p} not found; pass an `imagine` run folder or its "
                           "imagined.npz")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError(f"--device {args.device}: no CUDA device here; use --device cpu")
    elif args.device != "cpu":
        raise CLIError(f"--device must be cpu or cuda[:N]; got {args.device!r}")
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
              if getattr(args, f.name, None) is not None}
    values["real"] = args.real
    values["env"] = env.name
    cfg = TrainConfig(**values).validate()  # the data's env and the algorithm: train_policy
    from kalm.rl.train import train_policy

    summary = train_policy(cfg, args.out, progress=not (args.quiet or args.json),
                           resume=not args.restart, device=args.device)
    if args.json:
        print(json.dumps(summary))
    else:
        d = summary["data"]
        print(f"{summary['message']} (step {summary['step']}/{summary['steps']}); data: "
              f"{d['real']['transitions']} real + {d['imagined_transitions']} imagined transitions, "
              f"{d['goal_texts']} goal texts")
        print(f"policy in {summary['policy']}; evaluate with "
              f"`python -m kalm evaluate{flag} --policy {args.out} --suite all`")
    return 0


def _add_config_options(parser: argparse.ArgumentParser, cls, skip: set[str]) -> None:
    """One --flag per dataclass field (help from the field's docstring-comment in the source)."""
    import ast
    import inspect
    from dataclasses import MISSING, fields

    docs: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = str(b.value.value)  # type: ignore[union-attr]
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        h = docs.get(f.name, "") + f" (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, default=None,
                                action=argparse.BooleanOptionalAction, help=h)
        elif isinstance(default, list):
            # Space- or comma-separated: --objectives rollout dynamics == --objectives rollout,dynamics
            parser.add_argument(flag, dest=f.name, nargs="+", default=None, type=_comma_items,
                                action=_ExtendFlat, help=h + "; space- or comma-separated")
        elif isinstance(default, dict):
            parser.add_argument(flag, dest=f.name, default=None, type=json.loads,
                                help=h + " as JSON")
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=type(default), help=h)


def _comma_items(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


class _ExtendFlat(argparse.Action):
    """Stores the flattened items of ``nargs='+'`` values that each split on commas."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [item for v in values for item in v])


def _add_goal_source(parser: argparse.ArgumentParser) -> None:
    """--suite | --goals (one required) and --limit: where a command's goals come from."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--suite", help="train, rephrase, easy, hard (comma-separated) or all")
    g.add_argument("--goals", help="a goals file (JSON Lines)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first K goals")


def add_stage_commands(p: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """Add the stage commands to ``p``; returns the subparsers (to add more)."""
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="collect expert episodes into an offline dataset")
    c.add_argument("--episodes", type=int, required=True, help="number of episodes")
    c.add_argument("--seed", type=int, default=0, help="base seed (episode i is seeded from it)")
    c.add_argument("--out", required=True, help="dataset path (.npz), written atomically")
    c.add_argument("--suite", default=None,
                   help="collect oracle data for a suite's goals (train, rephrase, easy, hard); "
                        "default: relation goals with training phrasings")
    c.add_argument("--noise", type=float, default=None,
                   help="expert noise (CLEVR: probability of a random push instead of the "
                        "expert's, default 0.1; Meta-World: std of Gaussian action noise)")
    c.add_argument("--expert", default=None,
                   help="expert behaviour (CLEVR: greedy (default) over the goal's balls; direct "
                        "(relations: push the named ball toward its target while that makes "
                        "progress); aim (as direct, choosing the push that lands it nearest a "
                        "target point))")
    c.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_collect)

    e = sub.add_parser("evaluate", help="success per goal category of a policy")
    e.add_argument("--policy", required=True,
                   help="'expert', 'random', or a trained policy's run folder")
    _add_goal_source(e)
    e.add_argument("--episodes", type=int, default=50, help="episodes per category")
    e.add_argument("--seed", type=int, default=0, help="evaluation seed (same for all policies)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--video", default=None, help="folder for MP4s of the first episodes")
    e.add_argument("--video-episodes", type=int, default=2, help="videos per category")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    from kalm.llm.config import PRESETS, GroundConfig

    gr = sub.add_parser("ground", help="ground a causal LM on (goal text, rollout) pairs")
    gr.add_argument("--data", required=True, help="dataset (.npz) from `collect`")
    gr.add_argument("--out", required=True, help="run folder (rerun to resume)")
    gr.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                    help="option defaults: cpu (2 cores, ~1 h), gpu, tiny (smoke test)")
    gr.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(gr, GroundConfig, skip={"data", "env"})
    gr.set_defaults(func=cmd_ground)

    im = sub.add_parser("imagine", help="imagine rollouts for goal texts with a grounded LM")
    im.add_argument("--model", required=True,
                    help="grounded model folder (a `ground` run, or its model/ folder)")
    _add_goal_source(im)
    im.add_argument("--per-goal", type=int, default=4,
                    help="rollouts per goal, each from its own seeded initial state")
    im.add_argument("--seed", type=int, default=0, help="seed of the initial states (and suites)")
    im.add_argument("--out", required=True, help="run folder (rerun to resume)")
    im.add_argument("--batch-size", type=int, default=32,
                    help="rollouts generated together (and saved together: a resumable part)")
    im.add_argument("--max-steps", type=int, default=None,
                    help="cap on rollout length (default: the goal's horizon, 50; move goals 1)")
    im.add_argument("--no-explain", action="store_true",
                    help="skip the LM's explanations (no cycle consistency; faster)")
    im.add_argument("--replan", type=int, default=0,
                    help="physical decoding: when a generated step leaves the workbench, puts "
                         "balls inside each other or pushes a ball through another (geometry "
                         "of the states, never the simulator), try the LM's next best action, up "
                         "to N times a step (0: plain greedy)")
    im.add_argument("--guide", type=int, default=0,
                    help="goal-guided decoding: at each step take, of K candidate actions (the "
                         "LM's K likeliest; continuous actions: the LM's action and K - 1 "
                         "perturbations of it), the one whose next state (as the LM predicts it) "
                         "is closest to the goal by the goal's own rule, implausible ones ruled "
                         "out (never the simulator; 0: plain greedy; supersedes --replan)")
    im.add_argument("--guide-obstacles", action="store_true",
                    help="with --guide (continuous actions): rule out candidates whose predicted "
                         "path crosses a wall the goal's task puts in the way (the scene's "
                         "geometry, never the simulator; what the LM knows of walls is then no "
                         "longer what is measured)")
    im.add_argument("--settle", type=int, default=0, metavar="N",
                    help="let the LM write N more steps after its goal first holds on a generated "
                         "state (0: stop there, as the paper). Generated states reach the success "
                         "rule at its edge, where a small error of the dynamics leaves the "
                         "simulator's replay just short; settling carries the LM's rollout into "
                         "the goal's region (its own states and actions, never the simulator)")
    im.add_argument("--guide-horizon", type=int, default=1,
                    help="with --guide and continuous actions (Meta-World): score each candidate "
                         "by the state H steps on, the candidate held (the LM's dynamics head "
                         "iterated; 1: the next state)")
    im.add_argument("--explain-constrained", action="store_true",
                    help="keep each explanation to the goals the rollout's generated states made "
                         "true (training phrasings only; the LM picks among them, token by "
                         "token); default: free greedy text, as published")
    im.add_argument("--videos", type=int, default=0,
                    help="MP4s (imagined beside simulator) of the first K rollouts per category")
    im.add_argument("--overwrite", action="store_true",
                    help="discard rollouts an earlier run with another config left in --out")
    im.add_argument("--json", action="store_true", help="print the summary as JSON")
    im.add_argument("--quiet", action="store_true", help="no progress bar")
    im.set_defaults(func=cmd_imagine)

    from kalm.rl.config import TrainConfig

    tr = sub.add_parser("train", help="offline RL of a goal-conditioned policy (d3rlpy)")
    tr.add_argument("--real", required=True, help="real offline dataset (.npz from `collect`)")
    tr.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    tr.add_argument("--restart", action="store_true",
                    help="discard the folder's checkpoint, policy and metrics and start over")
    tr.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default: cpu)")
    tr.add_argument("--json", action="store_true", help="print the summary as JSON")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(tr, TrainConfig, skip={"real", "env"})  # --env: add_env_option
    tr.set_defaults(func=cmd_train)
    return sub


def add_env_option(sub: argparse._SubParsersAction) -> None:
    """``--env`` on every command."""
    from kalm.envs import DEFAULT_ENV, env_names

    for sp in sub.choices.values():  # every command takes --env
        sp.add_argument("--env", choices=env_names(), default=DEFAULT_ENV,
                        help=f"environment (default: {DEFAULT_ENV})")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the stage commands alone (what ``kalm.reproduce`` runs)."""
    p = argparse.ArgumentParser(prog="python -m kalm", description="kalm's stage commands")
    add_env_option(add_stage_commands(p))
    return p
