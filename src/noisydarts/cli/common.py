"""What the commands share: the parser, the run flags, printing a run's config. Torch-free."""

from __future__ import annotations

import argparse



class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def run_flags(p: argparse.ArgumentParser, default_out: str) -> None:
    """The flags every command that makes a run directory shares (search, train)."""
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML file of config values (search: over the preset, the default one unless --preset; "
                        "train: over the training defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set epochs=10 (repeatable)")
    p.add_argument("--seed", type=int, metavar="N", help="the run's seed: every random draw follows from it "
                   "(the same as --set seed=N; default: the config's)")
    p.add_argument("--out", metavar="DIR", help=f"run directory (default {default_out}); never an existing non-empty "
                   "one, except one whose run stopped before its first checkpoint (it is started again)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (YAML) and exit without running (with --resume: the run's)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar or per-epoch lines (the bar is drawn only on a terminal anyway)")


def seed_override(args) -> list[str]:
    """``--seed N`` as the ``--set seed=N`` it stands for (after the other --set pairs); a
    ``--set seed=M`` with another value is refused, since neither flag can be said to win."""
    if getattr(args, "seed", None) is None:
        return []
    from ..errors import UserError

    for pair in args.overrides:
        key, _, value = pair.partition("=")
        if key.strip() == "seed":
            try:
                same = int(value.strip()) == args.seed
            except ValueError:
                same = False
            if not same:
                raise UserError(f"--seed {args.seed} and --set {pair.strip()} disagree: give the seed once")
    return [f"seed={args.seed}"]


def _print_run_config(run_dir, command: str) -> int:
    """``--resume DIR --print-config``: the config the run continues with, as resolved."""
    from ..config import dump
    from ..runtime.runs import read_run_config, resume_dir

    if command == "search":
        from ..search import resolve_config

        def resolver(raw):
            return resolve_config(config_file=raw)
    else:
        from ..train import resolve_config as resolver
    cfg, provenance = read_run_config(resume_dir(run_dir, command), command, resolver)
    print(dump(cfg, provenance or None), end="")
    return 0


def _main_process() -> bool:
    """False on the ranks other than 0 of a torchrun launch (RANK set by torchrun): they print nothing."""
    import os

    return os.environ.get("RANK", "0") == "0"
