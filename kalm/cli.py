"""The command line: ``python -m kalm <command> ...``.

Commands:
  collect   expert episodes -> an offline dataset (.npz)
  evaluate  success per goal category of a policy, on seeded episodes
  ground    ground a causal LM on a dataset's (goal text, rollout) pairs
  imagine   a grounded LM's rollouts for goal texts, with their validity checks
  train     offline RL of a goal-conditioned policy on real (and imagined) rollouts
  reproduce the whole pipeline (collect, ground, imagine, oracle, train, evaluate) and a results
            table beside the paper's figures
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from kalm.commands import CLIError, _env, add_env_option, add_stage_commands

__all__ = ["main", "build_parser", "CLIError"]


def cmd_reproduce(args: argparse.Namespace) -> int:
    import shlex

    from kalm.reproduce import NOVEL, STAGES, make_config, reproduce

    def int_list(text: str | None, flag: str) -> list[int] | None:
        if text is None:
            return None
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise CLIError(f"{flag} takes comma-separated integers; got {text!r}") from None

    env = _env(args, "reproduce")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    bad = [s for s in stages or [] if s not in STAGES]
    if bad:
        raise CLIError(f"unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")
    if args.grounded and not Path(args.grounded).exists():
        raise CLIError(f"--grounded {args.grounded} not found; pass a grounded model folder "
                       f"(a `ground` run or assets/grounded/{env.name})")
    algos = None
    if args.algos is not None:
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        if not algos:
            raise CLIError("--algos takes comma-separated algorithm names")
    def int_pairs(text: str | None, ok: Callable[[str], bool], error: str) -> dict | None:
        """``NAME=N,NAME=N`` as {NAME: N} (N >= 1, ``ok(NAME)``), else CLIError(error + part)."""
        if text is None:
            return None
        pairs = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, _, n = part.partition("=")
            if not ok(name.strip()) or not n.strip().isdigit() or int(n) < 1:
                raise CLIError(f"{error}; got {part!r}")
            pairs[name.strip()] = int(n)
        return pairs

    per_goal = int_pairs(args.imagine_per_goal, lambda suite: suite in NOVEL,
                         f"--imagine-per-goal takes SUITE=K pairs with SUITE one of "
                         f"{', '.join(NOVEL)} and K >= 1")
    algo_steps = int_pairs(args.algo_steps, bool, "--algo-steps takes ALGO=N pairs with N >= 1")
    cfg = make_config(
        args.preset, imagine_per_goal=per_goal, seeds=int_list(args.seeds, "--seeds"), grounded=args.grounded, lm=args.lm,
        algo=args.algo, steps=args.steps, algo_steps=algo_steps, episodes=args.episodes_per_category,
        llm_episodes=args.llm_episodes, filter=args.filter, embedder=args.embedder,
        real_episodes=args.real_episodes,
        ground_args=shlex.split(args.ground_args) if args.ground_args is not None else None,
        train_args=shlex.split(args.train_args) if args.train_args is not None else None,
        env=None if env.name == "clevr" else env.name, algos=algos, volume=args.volume,
        dt_steps=args.dt_steps, imagine_guide=args.imagine_guide,
        imagine_guide_horizon=args.imagine_guide_horizon,
        imagine_guide_obstacles=args.imagine_guide_obstacles or None,
        imagine_settle=args.imagine_settle)
    if args.jobs < 0:
        raise CLIError(f"--jobs must be 0 (auto) or more; got {args.jobs}")
    res = reproduce(cfg, args.out, stages=stages, jobs=args.jobs)
    if res:
        print(f"results in {Path(args.out) / 'results.md'} and {Path(args.out) / 'results.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kalm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = add_stage_commands(p)

    from kalm.reproduce import PRESETS as REPRO_PRESETS
    from kalm.reproduce import STAGES

    rp = sub.add_parser("reproduce", help="run the whole pipeline and tabulate every method per "
                                          "category beside the paper's figures")
    rp.add_argument("--preset", choices=sorted(REPRO_PRESETS), default="cpu",
                    help="sizes: cpu (the 2-core machine; hours) or tiny (a minute; needs "
                         "--grounded or --lm)")
    rp.add_argument("--out", default="runs/reproduce", help="folder of the whole run (rerun the "
                                                            "same command to resume)")
    rp.add_argument("--seeds", default=None, help="training seeds, comma-separated (cpu: 0,1,2)")
    rp.add_argument("--grounded", default=None,
                    help="use this grounded model (e.g. assets/grounded/clevr) instead of the "
                         "ground stage")
    rp.add_argument("--lm", default=None, help="base LM of the ground stage (packaged name or a "
                                               "local HF folder)")
    rp.add_argument("--stages", default=None,
                    help=f"run only these stages, comma-separated: {','.join(STAGES)}")
    rp.add_argument("--algo", default=None, help="offline RL algorithm of every method "
                                                 "(default DiscreteBC)")
    rp.add_argument("--algos", default=None,
                    help="several algorithms, comma-separated: every method is trained with each "
                         "(metaworld cpu: bc,td3_plus_bc); the first is the main one")
    rp.add_argument("--steps", type=int, default=None,
                    help="gradient steps per policy (CLEVR cpu: 20000; alone it sets every "
                         "algorithm's)")
    rp.add_argument("--algo-steps", default=None, metavar="ALGO=N[,ALGO=N]",
                    help="gradient steps of one algorithm's policies (CLEVR cpu: "
                         "discrete_cql=10000); the others keep --steps")
    rp.add_argument("--episodes-per-category", type=int, default=None,
                    help="evaluation episodes per category (cpu: 50)")
    rp.add_argument("--llm-episodes", type=int, default=None,
                    help="episodes per category of the LLM-as-policy baseline (cpu: 20; 0 skips it)")
    rp.add_argument("--filter", default=None,
                    help="imagined-rollout filter of kalm_filtered (cpu: match,realistic)")
    rp.add_argument("--embedder", default=None, help="goal embedder of the policies: a train --embedder name (minilm, "
                    "lm:DIR, ...) or grounded = lm: of the run's grounded model (CLEVR cpu's "
                    "default; Meta-World's: minilm)")
    rp.add_argument("--real-episodes", type=int, default=None,
                    help="real episodes to collect (cpu: 4000)")
    rp.add_argument("--ground-args", default=None,
                    help="extra `ground` options in one string, e.g. \"--steps 400 --init-from "
                         "assets/grounded/clevr\"")
    rp.add_argument("--volume", choices=["preset", "paper"], default=None,
                    help="imagined-data volume: preset (cpu: 400 rephrase, 2,000 easy, 110 hard "
                         "rollouts) or paper (the paper's 5,600 / 72,400 / 1,680, for a bigger "
                         "machine); the oracle gets as many expert episodes per suite")
    rp.add_argument("--dt-steps", type=int, default=None,
                    help="gradient steps of the Decision Transformer baseline on the real data, "
                         "one per seed (cpu: 5000; 0 skips it)")
    rp.add_argument("--imagine-guide", type=int, default=None,
                    help="goal-guided decoding in the imagine stage (imagine --guide K: of K "
                         "candidate actions, the LM's K likeliest or, with continuous actions, its "
                         "own and K-1 perturbations, the one whose predicted state is closest to "
                         "the goal; default 0 = greedy, as published)")
    rp.add_argument("--imagine-guide-horizon", type=int, default=None, metavar="H",
                    help="look-ahead of --imagine-guide with continuous actions (imagine "
                         "--guide-horizon H: each candidate scored by the predicted state H steps "
                         "on; default 1)")
    rp.add_argument("--imagine-guide-obstacles", action="store_true",
                    help="with --imagine-guide and continuous actions (imagine --guide-obstacles): "
                         "rule out candidates whose predicted path crosses a wall the goal's task "
                         "puts in the way (the scene's geometry, never the simulator)")
    rp.add_argument("--imagine-settle", type=int, default=None, metavar="N",
                    help="imagine --settle N in the imagine stage: the LM writes N more steps "
                         "after each rollout's goal first holds on a generated state (default 0: "
                         "it stops there, as published)")
    rp.add_argument("--imagine-per-goal", default=None, metavar="SUITE=K[,SUITE=K]",
                    help="imagined rollouts per goal of these novel suites, e.g. hard=4 (cpu: "
                         "rephrase=1, easy=20, hard=1); the oracle follows with as many expert "
                         "episodes")
    rp.add_argument("--train-args", default=None,
                    help="extra `train` options for every policy, in one string")
    rp.add_argument("--jobs", type=int, default=0,
                    help="worker processes that run independent units side by side (imagination "
                         "beside the oracle data and the real-data policies; policies and "
                         "evaluations two at a time), each with cores/jobs CPU threads; 1 runs "
                         "every unit in this process, one after another; 0 (default): 2 where "
                         "there are 2 cores or more")
    rp.set_defaults(func=cmd_reproduce)

    add_env_option(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; finished work was saved", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
