"""CLI commands for found architectures: ``info``, ``zoo``, ``train``, ``evaluate``, ``export``.

Kept apart from cli.py (which appends :data:`COMMANDS`) so each is a thin layer over
noisydarts.evaluation / zoo / train.
"""

from __future__ import annotations

import json

from .cli import _common
from .errors import UserError

ARCH_HELP = "a zoo name (see `noisydarts zoo`), an NB201 string, a genotype.json, a search run directory or Genotype(...) text"


# --- info ---------------------------------------------------------------------------------------

def _add_info(sub) -> None:
    p = sub.add_parser("info", help="params and mult-adds of an architecture's evaluation network",
                       description="Params (M, without the auxiliary head) and mult-adds (M, conv + linear, "
                                   "torch.utils.flop_counter) of the evaluation network of an architecture.")
    p.add_argument("arch", metavar="GENOTYPE", help=ARCH_HELP)
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "imagenet"],
                   help="network family and number of classes (default cifar10)")
    p.add_argument("--json", action="store_true", help="print {\"params_m\": ..., \"multadds_m\": ...}")
    _common(p)
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .evaluation import info, load_arch

    result = info(load_arch(args.arch), args.dataset)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"params:    {result['params_m']:.3f} M (without the auxiliary head)")
        print(f"mult-adds: {result['multadds_m']:.1f} M ({args.dataset}, one image)")
    return 0


# --- zoo ----------------------------------------------------------------------------------------

def _add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="list the published genotypes", description="List the genotype zoo: published "
                       "CIFAR-10 params / mult-adds / top-1 beside the computed params and mult-adds.")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    _common(p)
    p.set_defaults(func=_cmd_zoo)


def _cmd_zoo(args) -> int:
    from .zoo import PARAMS_NOTES, table

    rows = table()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print(f"{'name':<14}{'params (pub)':>13}{'params':>9}{'MAdds (pub)':>13}{'MAdds':>8}{'top-1 (pub)':>13}  search")
    for r in rows:
        note = " *" if r["name"] in PARAMS_NOTES else ""
        print(f"{r['name']:<14}{fmt(r['published_params_m'], '.2f'):>13}{r['params_m']:>9.2f}"
              f"{fmt(r['published_multadds_m'], '.0f'):>13}{r['multadds_m']:>8.0f}{fmt(r['published_top1'], '.2f'):>13}"
              f"  {r['search']}{note}")
    print("CIFAR-10 network: C=36, 20 cells; params without the auxiliary head; mult-adds count conv + linear only "
          "(2-4 % below the NoisyDARTS release's counter).")
    for name, (_, why) in PARAMS_NOTES.items():
        print(f"* {name}: {why}")
    return 0


COMMANDS = [_add_info, _add_zoo]
