"""The ``noisydarts`` command: a thin layer over the Python API.

Every subcommand parses its flags, calls one API function and prints the result. Errors the
user can fix (:class:`~noisydarts.errors.UserError`) are printed as one line with exit code 2;
a run that diverged (:class:`~noisydarts.runtime.guard.Diverged`) exits with code 3; ``--debug`` shows
the traceback instead. Nothing here imports torch before a command runs, so ``--help`` and
``presets`` answer at once.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import UserError
from .common import _common, _main_process, _Parser, _print_run_config, run_flags, seed_override

from ..config import DATA_PRESET, DEFAULT_PRESET, DEMO_DATA, default_preset  # noqa: E402  (no torch import: --help stays fast)


# --- search -------------------------------------------------------------------------------------

def _add_search(sub) -> None:
    p = sub.add_parser("search", help="run an architecture search", description="Run an architecture search.")
    p.add_argument("--preset", help=f"a named preset (default: {DEFAULT_PRESET} on the embedded {DEMO_DATA}, "
                                    f"{DATA_PRESET} with --data naming other data; see `noisydarts presets`)")
    p.add_argument("--data", metavar="NAME_OR_DIR", help="cifar10-mini (embedded), cifar10, cifar100, or an ImageFolder directory")
    run_flags(p, "runs/<timestamp>-<preset>")
    p.add_argument("--no-plots", action="store_true", help="no plots/ and report at the end (config key plots)")
    p.add_argument("--tensorboard", action="store_true",
                   help="log per-epoch scalars to RUN_DIR/tensorboard (config key tensorboard; needs tensorboard)")
    _common(p)
    p.set_defaults(func=_cmd_search)


def search_config(args) -> dict:
    from ..search import resolve_config

    overrides = list(args.overrides) + seed_override(args)
    if args.data:
        overrides.append(f"data.name={args.data}")
    if getattr(args, "no_plots", False):
        overrides.append("plots=false")
    if getattr(args, "tensorboard", False):
        overrides.append("tensorboard=true")
    # The layers are always: a preset (the default one for the data unless --preset), then --config, then --set.
    return resolve_config(args.preset or default_preset(args.data), args.config, overrides)


def _cmd_search(args) -> int:
    from ..search import search

    if args.resume:
        if args.preset or args.config or args.overrides or args.data or args.out or args.no_plots or args.tensorboard \
                or args.seed is not None:
            raise UserError("--resume continues a run with its own config: drop --preset/--config/--set/--seed/--data"
                            "/--out/--no-plots/--tensorboard")
        if args.print_config:
            return _print_run_config(args.resume, "search")
        result = search(resume=args.resume, progress=not args.no_progress)
    else:
        cfg = search_config(args)
        if args.print_config:
            from ..config import dump

            print(dump(cfg), end="")
            return 0
        label = args.preset or default_preset(args.data)
        result = search(cfg, out=args.out, progress=not args.no_progress, label=label)
    if not _main_process():
        return 0  # under torchrun, rank 0 prints
    from ..spaces import space_of

    if result.stopped:
        print(f"stopped early after epoch {result.stopped['epoch']}: {result.stopped['reason']}")
    # A space with something to say about the result (NB201: the benchmark's accuracies) says it,
    # genotype included; others print the genotype.
    print(space_of(result.genotype).describe(result.genotype) or f"genotype: {result.genotype}")
    run = result.run_dir
    print(f"run directory: {run}")
    if (run / "report.html").is_file():
        print(f"report: {run / 'report.html'}")
    if (run / "genotype.json").is_file():
        print(f"next: noisydarts train {run}   |   noisydarts info {run}   |   noisydarts report {run}")
    else:
        print(f"continue: noisydarts search --resume {run}")
    return 0


# --- nb201 --------------------------------------------------------------------------------------

def _add_nb201(sub) -> None:
    p = sub.add_parser("nb201", help="NAS-Bench-201 ground truth", description="NAS-Bench-201 ground truth.")
    nb_sub = p.add_subparsers(dest="nb201_command", required=True, parser_class=_Parser, metavar="COMMAND")
    q = nb_sub.add_parser("lookup", help="benchmark accuracies of a cell",
                          description="Print the NAS-Bench-201 index, test accuracies, params and mult-adds of a cell.")
    q.add_argument("arch", metavar="ARCH", help="a cell string, e.g. '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                   "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|', or an NB201 search or training run directory "
                   "or genotype.json")
    q.add_argument("--json", action="store_true", help="print a JSON object instead")
    _common(q)
    q.set_defaults(func=_cmd_nb201_lookup)
    _common(p)


def _cmd_nb201_lookup(args) -> int:
    import json

    from ..benchmark import nb201

    # A cell string (no torch needed), or anything naming an NB201 architecture (a run directory, ...).
    arch = args.arch
    if not arch.lstrip().startswith("|"):
        from ..models import resolve_genotype
        from ..spaces import space_of

        arch = resolve_genotype(args.arch)
        if space_of(arch).name != "nb201":
            raise UserError(f"{args.arch} holds a {space_of(arch).name}-space architecture: "
                            "nb201 lookup takes a NAS-Bench-201 cell")
    result = nb201.lookup(arch)
    print(json.dumps(result.to_dict()) if args.json else nb201.format_result(result))
    return 0


# --- presets ------------------------------------------------------------------------------------

def _add_presets(sub) -> None:
    p = sub.add_parser("presets", help="list the presets, or print one",
                       description="List the presets, one line each; with NAME, print that preset's YAML "
                                   "(`noisydarts search --preset NAME --print-config` shows it fully resolved).")
    p.add_argument("name", nargs="?", metavar="NAME", help="a preset to print")
    _common(p)
    p.set_defaults(func=_cmd_presets)


def _cmd_presets(args) -> int:
    from ..config import load_preset, preset_names, preset_text

    if args.name:
        print(preset_text(args.name), end="")
        return 0
    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {load_preset(name).get('description', '')}")
    return 0


# --- plot and report ----------------------------------------------------------------------------

def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw the plots of a search or training run",
                       description="Draw the plots of a run as PNG and SVG into RUN_DIR/plots/: of a search run, "
                                   "alpha evolution, dominant ops, derived cells (and NB201 accuracy); of a training "
                                   "run, loss, accuracy and learning rate per epoch and the trained cells.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search or training run directory (finished or interrupted)")
    _common(p)
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args) -> int:
    from ..viz.run import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write report.md and report.html for one or more runs",
                       description="Write report.md and a self-contained report.html (config, genotype, plots, "
                                   "metrics; for training runs the final and best.pt accuracy); several runs are "
                                   "overlaid in one set of figures. Search runs and training runs go in separate "
                                   "reports.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="search run directories, or training run directories")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: the first RUN_DIR)")
    p.add_argument("--edge", metavar="[KIND:]INDEX", help="search runs: the edge whose weights the overlay shows, e.g. "
                   "normal:3 (rows of alpha in metrics.jsonl; default: the edge whose weights changed most)")
    _common(p)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from ..viz.report import write_report

    for path in write_report(args.run_dirs, out=args.out, edge=args.edge):
        print(path)
    return 0


# --- compare ------------------------------------------------------------------------------------

def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="run methods x seeds and summarize them",
                       description="Run every method (a preset or a YAML config file) with every seed, in parallel "
                                   "processes, into DIR/<method>-s<seed>; then summary.md/.csv/.json and report.html "
                                   "with overlay plots. The same command again continues an interrupted comparison.")
    p.add_argument("methods", nargs="+", metavar="PRESET_OR_CONFIG", help="presets (see `noisydarts presets`) or YAML files")
    p.add_argument("--seeds", "--seed", dest="seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S",
                   help="seeds (default 0 1 2; --seed is the same flag, as search and train call it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config value for every run, e.g. --set epochs=20 (repeatable)")
    p.add_argument("--data", metavar="NAME_OR_DIR", help="the dataset of every run (same as --set data.name=...)")
    p.add_argument("--jobs", type=int, metavar="N", help="runs at a time (default: one per CPU core, or one per GPU)")
    p.add_argument("--threads", type=int, metavar="T", help="torch threads per run (default: CPU cores / jobs)")
    p.add_argument("--out", required=True, metavar="DIR", help="the comparison's directory (new, or one to continue)")
    p.add_argument("--no-progress", action="store_true", help="no per-run lines (the summary table is still printed)")
    _common(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from ..compare import compare, summary_table, text_table

    overrides = list(args.overrides) + ([f"data.name={args.data}"] if args.data else [])
    try:
        result = compare(args.methods, args.seeds, overrides, out=args.out, jobs=args.jobs, threads=args.threads,
                         progress=not args.no_progress)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue the comparison", file=sys.stderr)
        return 130
    if args.no_progress:
        print(text_table(*summary_table(result)))
    return 1 if result.failed else 0


# --- main ---------------------------------------------------------------------------------------

COMMANDS = [_add_search, _add_presets, _add_nb201, _add_plot, _add_report, _add_compare]


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__
    from .train import COMMANDS as TRAIN_COMMANDS  # info, zoo, train, evaluate, export

    parser = _Parser(prog="noisydarts", description="Differentiable architecture search that does not collapse into skip connections.")
    parser.add_argument("--version", action="version", version=f"noisydarts {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for add in COMMANDS + [c for c in TRAIN_COMMANDS if c not in COMMANDS]:
        add(sub)
    return parser


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as the CLI prints them: one line, like its errors (``--debug``: Python's format)."""
    return f"noisydarts: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    python_format = warnings.formatwarning
    if not args.debug:
        warnings.formatwarning = one_line_warning
    try:
        return args.func(args) or 0
    except UserError as e:
        if args.debug and _main_process():
            raise
        if _main_process():  # under torchrun: one line, from rank 0; the others exit quietly
            print(f"noisydarts: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the disk, the file system or a path that is not ours to fix in code
        if args.debug:
            raise
        from ..errors import os_reason

        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"noisydarts: error: cannot use{where}: {os_reason(e)} (--debug shows where)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if _main_process():
            print(f"\n{interrupted_message(e)}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = python_format
        if "torch" in sys.modules:  # a data-parallel run's process group, if any
            from ..runtime.distributed import teardown

            teardown()


def interrupted_message(e: KeyboardInterrupt) -> str:
    """What to do after Ctrl-C: resume the run that was interrupted, named by its real path
    (:func:`noisydarts.runtime.runs.active_run` attaches it), or nothing to resume."""
    run_dir, command = getattr(e, "run_dir", None), getattr(e, "command", "search")
    if run_dir is None or not run_dir.is_dir():
        return "interrupted" if run_dir is None else "interrupted before the run began (nothing was kept)"
    if (run_dir / "checkpoint.pt").is_file():
        return f"interrupted: continue with `noisydarts {command} --resume {shlex.quote(str(run_dir))}`"
    return (f"interrupted before the first epoch ended: nothing to resume in {run_dir} (start it again with the "
            f"same command (--out {shlex.quote(str(run_dir))}))")


if __name__ == "__main__":
    sys.exit(main())
