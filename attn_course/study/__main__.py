"""The study's command line: ``python -m attn_course.study {run,report,reproduce,bench,list} ...``.

Examples::

    python -m attn_course.study list                     # settings, budgets, the zoo table, grids
    python -m attn_course.study run zoo                  # run (or resume) the zoo grid into results/zoo.csv
    python -m attn_course.study report zoo               # means, 95% intervals, paired differences
    python -m attn_course.study reproduce --grid zoo --mechanism se --budget chapter --seed 0
    python -m attn_course.study bench                    # training-step time of each model / the plain ResNet
"""

import argparse
import sys

import torch

from ..bench import training_step_times
from .report import CROSS_MACHINE_TOLERANCE, GPU_TOLERANCE, format_report, rerun_tolerance
from .results import ResultsFileError, as_stored, packaged_results, read_results, results_path
from .runner import build_model, run_grid, run_one
from .settings import BUDGETS, GRIDS, MODELS, SETTINGS, ZOO, UnknownNameError, get_grid


def _read(grid, directory):
    path = results_path(grid, directory) if directory else packaged_results(grid)
    return read_results(path, grid)


def command_list(args):
    print("settings:")
    for s in SETTINGS.values():
        print(f"  {s.name:10s} {s.description}\n  {'':10s} data: {s.data or '(make_cluttered_digits defaults)'}"
              + (f"; trained on {s.train_on}" if s.train_on else ""))
    print("budgets:")
    for b in BUDGETS.values():
        length = (f"{b.epochs} epochs" if b.steps is None else
                  f"{b.steps} steps ({b.epochs} rounds of {b.steps_per_round}, tested after each)")
        print(f"  {b.name:10s} {length}, {b.n_train} training / {b.n_test} test images, batch "
              f"{b.batch_size}, lr {b.lr}: {b.description}")
    print("models (the zoo table, then the variants):")
    for name, m in MODELS.items():
        where = "every stage" if m.stages is None else f"stages {m.stages}"
        print(f"  {name:14s} {m.attention or '-':5s} {str(m.kwargs):45s} {where:12s} {m.why}")
    print("grids:")
    for g in GRIDS.values():
        print(f"  {g.name:10s} {len(g.runs())} runs: models {', '.join(g.models)}; settings {', '.join(g.settings)};"
              f" budgets {', '.join(g.budgets)}; seeds {', '.join(map(str, g.seeds))}\n  {'':10s} {g.description}")
    return 0


def _set_threads(args):
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"error: --threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def command_run(args):
    _set_threads(args)
    made = run_grid(args.grid, args.results, device=args.device, limit=args.limit, settings=args.setting,
                    models=args.mechanism, budgets=args.budget)
    print(f"{made} runs made; results in {results_path(args.grid, args.results)}")
    return 0


def command_report(args):
    rows = _read(args.grid, args.results)
    print(f"grid {args.grid}: {len(rows)} runs")
    models = get_grid(args.grid).models
    baseline = "resnet" if "resnet" in models else models[0]  # segmentation: the network without a head
    print(format_report(rows, metric=args.metric, order=tuple(MODELS), baseline=baseline,
                        settings_order=tuple(SETTINGS), budgets_order=tuple(BUDGETS)))
    return 0


def command_reproduce(args):
    rows = _read(args.grid, args.results)
    stored = [r for r in rows if (r["mechanism"], r["budget"], r["seed"], r["setting"])
              == (args.mechanism, args.budget, args.seed, args.setting)]
    if not stored:
        print(f"no stored run of {args.mechanism} / {args.setting} / {args.budget} / seed {args.seed} in grid "
              f"{args.grid}", file=sys.stderr)
        return 2
    stored = stored[0]
    if args.threads is None:
        args.threads = stored["threads"]  # the row's own thread count: the same sums in the same order
    _set_threads(args)
    fresh = run_one(args.setting, args.mechanism, args.budget, args.seed, grid=args.grid, device=args.device)
    gpu = stored["device"] != "cpu" or fresh["device"] != "cpu"  # a GPU made either run
    same_machine = not gpu and all(stored[k] == fresh[k] for k in ("torch", "cpu", "threads", "device"))
    cell = [r["test_accuracy"] for r in rows if (r["mechanism"], r["budget"], r["setting"])
            == (args.mechanism, args.budget, args.setting)]
    default = 0.0 if same_machine else rerun_tolerance(cell, gpu)
    tolerance = args.tolerance if args.tolerance is not None else default
    fresh["test_accuracy"] = as_stored(fresh["test_accuracy"])  # the file keeps 6 significant digits
    difference = abs(fresh["test_accuracy"] - stored["test_accuracy"])
    print(f"stored test accuracy     {stored['test_accuracy']:.6f} (torch {stored['torch']}, {stored['device']}, "
          f"{stored['cpu']}, {stored['threads']} threads, commit {stored['commit']})")
    print(f"recomputed test accuracy {fresh['test_accuracy']:.6f} (torch {fresh['torch']}, {fresh['device']}, "
          f"{fresh['cpu']}, {fresh['threads']} threads, commit {fresh['commit']})")
    verdict = "reproduced" if difference <= tolerance else "NOT reproduced"
    kind = ("same machine kind: bit for bit" if same_machine else
            f"{'a GPU' if gpu else 'another machine kind'}: not bit for bit; the larger of "
            f"{GPU_TOLERANCE if gpu else CROSS_MACHINE_TOLERANCE} and two seeds' 95% range")
    print(f"difference {difference:.6f}, tolerance {tolerance:.4g} ({kind}): {verdict}")
    return 0 if difference <= tolerance else 1


def command_bench(args):
    names = args.models or list(ZOO)
    torch.manual_seed(0)
    models = {name: build_model(name) for name in names}
    if "resnet" not in models:
        models["resnet"] = build_model("resnet")
    seconds = training_step_times(models, (args.batch_size, 1, 32, 32), repeats=args.repeats)
    base = seconds["resnet"]
    print(f"training step (forward, backward, AdamW) at batch {args.batch_size}, 1 x 32 x 32, on the CPU with "
          f"{torch.get_num_threads()} threads; median of {args.repeats}, models timed in turns")
    for name in models:
        print(f"  {name:14s} {1e3 * seconds[name]:8.2f} ms   {seconds[name] / base:5.2f} x resnet")
    return 0


def parser():
    p = argparse.ArgumentParser(prog="python -m attn_course.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the settings, budgets, models and grids")
    grid_names = ", ".join(GRIDS)
    run = sub.add_parser("run", help="run a grid, resuming where it stopped")
    run.add_argument("grid", help=f"one of: {grid_names}")
    run.add_argument("--results", default="results", help="folder of the CSV files (default: results)")
    run.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    run.add_argument("--limit", type=int, default=None, help="stop after this many runs")
    for option, what in (("--setting", "settings"), ("--mechanism", "models"), ("--budget", "budgets")):
        run.add_argument(option, action="append", default=None,
                         help=f"run only these {what} of the grid (repeat the option for several)")
    run.add_argument("--threads", type=int, default=None,
                     help="CPU threads per run (default: torch's; 1 runs best beside other work)")
    report = sub.add_parser("report", help="means, 95%% intervals and paired differences of a grid")
    report.add_argument("grid", help=f"one of: {grid_names}")
    report.add_argument("--results", default=None, help="folder of the CSV files (default: the packaged results)")
    report.add_argument("--metric", default="test_accuracy", help="a numeric column (default: test_accuracy)")
    again = sub.add_parser("reproduce", help="re-run one stored row and compare its test accuracy")
    again.add_argument("--grid", required=True)
    again.add_argument("--mechanism", required=True)
    again.add_argument("--budget", required=True)
    again.add_argument("--seed", type=int, required=True)
    again.add_argument("--setting", default="default")
    again.add_argument("--results", default=None, help="folder of the CSV files (default: the packaged results)")
    again.add_argument("--device", default="cpu")
    again.add_argument("--threads", type=int, default=None,
                       help="CPU threads (default: the stored row's, which reproduces it bit for bit on its CPU)")
    again.add_argument("--tolerance", type=float, default=None,
                       help=f"largest accepted difference (default: 0 on the CPU kind that stored the row; elsewhere "
                            f"the larger of {CROSS_MACHINE_TOLERANCE} ({GPU_TOLERANCE} where a GPU made either "
                            f"run) and 1.96 * sqrt(2) * the sd of the row's seeds)")
    bench = sub.add_parser("bench", help="training-step time of each model relative to the plain ResNet")
    bench.add_argument("models", nargs="*", help="models to time (default: the zoo)")
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--repeats", type=int, default=20)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    commands = {"list": command_list, "run": command_run, "report": command_report,
                "reproduce": command_reproduce, "bench": command_bench}
    try:
        if getattr(args, "grid", None) is not None:
            get_grid(args.grid)
        return commands[args.command](args)
    except (UnknownNameError, ResultsFileError) as error:  # one clear line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
