"""CLI commands for found architectures: ``info``, ``zoo``, ``train``, ``evaluate``, ``export``.

Kept apart from cli.py (which appends :data:`COMMANDS`) so each is a thin layer over
noisydarts.models / zoo / train.
"""

from __future__ import annotations

import json

from .common import _common, run_flags, seed_override
from ..errors import ARCH_FORMS as ARCH_HELP
from ..errors import UserError


# --- info ---------------------------------------------------------------------------------------

def _add_info(sub) -> None:
    p = sub.add_parser("info", help="params and mult-adds of an architecture's evaluation network",
                       description="Params (M, without the auxiliary head) and mult-adds (M, conv + linear, "
                                   "torch.utils.flop_counter) of the evaluation network of an architecture.")
    p.add_argument("arch", metavar="GENOTYPE", help=ARCH_HELP)
    p.add_argument("--data", dest="dataset", default=None, metavar="DATASET",
                   help="cifar10, cifar100, imagenet or imagenet16-120: the network family, its resolution and the "
                        "number of classes (default: a training run as it was trained; else cifar10, and imagenet "
                        "for the MobileNetV2 space)")
    # the flag's old name: search, train and evaluate call it --data
    p.add_argument("--dataset", dest="dataset", default=None, metavar="DATASET", help="the old name of --data")
    p.add_argument("--json", action="store_true", help="print {\"params_m\": ..., \"multadds_m\": ...}")
    _common(p)
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from ..models import info

    result = info(args.arch, args.dataset)
    if args.json:
        print(json.dumps(result))
        return 0
    trained = result.get("trained")
    if trained is not None:
        sizes = ", ".join(f"{k} {v}" for k, v in trained["network"].items())
        where = (f"the trained network: {trained['family']} family ({sizes}), {trained['num_classes']} classes, "
                 f"{trained['resolution']} px")
    else:
        from ..models import resolve_genotype
        from ..spaces import space_of

        where = args.dataset or space_of(resolve_genotype(args.arch)).info_dataset
    print(f"params:    {result['params_m']:.3f} M (without the auxiliary head)")
    print(f"mult-adds: {result['multadds_m']:.1f} M ({where}, one image)")
    return 0


# --- zoo ----------------------------------------------------------------------------------------

def _add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="list the published genotypes", description="List the genotype zoo: published "
                       "CIFAR-10 params / mult-adds / top-1 beside the computed params and mult-adds.")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    _common(p)
    p.set_defaults(func=_cmd_zoo)


def _cmd_zoo(args) -> int:
    from ..models.zoo import PARAMS_NOTES, table

    rows = table()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    width = max(len(r["name"]) for r in rows) + 1
    print(f"{'name':<{width}}{'params (pub)':>13}{'params':>9}{'mult-adds (pub)':>16}{'mult-adds':>10}{'top-1 (pub)':>13}  search")
    for r in rows:
        note = " *" if r["name"] in PARAMS_NOTES else ""
        print(f"{r['name']:<{width}}{fmt(r['published_params_m'], '.2f'):>13}{r['params_m']:>9.2f}"
              f"{fmt(r['published_multadds_m'], '.0f'):>16}{r['multadds_m']:>10.0f}{fmt(r['published_top1'], '.2f'):>13}"
              f"  {r['search']}{note}")
    print("CIFAR-10 networks of each space's default size (DARTS: C=36, 20 cells); params without auxiliary heads; "
          "mult-adds count conv + linear only (2-4 % below the NoisyDARTS release's counter). "
          "`noisydarts info NAME --data imagenet` sizes the ImageNet networks (noisydarts_mbv2_a: 5.55 M, 447 M).")
    for name, (_, why) in PARAMS_NOTES.items():
        print(f"* {name}: {why}")
    return 0


# --- train / evaluate / export ---------------------------------------------------------------------

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train an architecture from scratch (DARTS protocol)",
                       description="Train the evaluation network of an architecture from scratch and test it.")
    p.add_argument("arch", metavar="GENOTYPE", nargs="?", help=ARCH_HELP)
    p.add_argument("--family", help="the dataset family (cifar, imagenet, ...): picks the space's network and "
                                    "training recipe (default cifar)")
    p.add_argument("--data", metavar="NAME_OR_DIR", help="cifar10 (default), cifar100, cifar10-mini or an ImageFolder directory")
    run_flags(p, "runs/<timestamp>-train")
    p.add_argument("--no-plots", action="store_true", help="no plots/ and report at the end (config key plots)")
    p.add_argument("--tensorboard", action="store_true",
                   help="log per-epoch scalars to RUN_DIR/tensorboard (config key tensorboard; needs tensorboard)")
    _common(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .common import _print_run_config
    from ..config import dump, load_yaml
    from ..train import resolve_config, train

    if args.resume:
        if (args.arch or args.overrides or args.data or args.out or args.config or args.family or args.seed is not None
                or args.no_plots or args.tensorboard):
            raise UserError("--resume continues a run with its own architecture and config: give only --resume DIR")
        if args.print_config:
            return _print_run_config(args.resume, "train")
        result = train(None, resume=args.resume, progress=not args.no_progress)
    else:
        base = load_yaml(args.config) if args.config else {}
        if args.family:
            base["family"] = args.family
        overrides = list(args.overrides) + seed_override(args) + ([f"data.name={args.data}"] if args.data else [])
        overrides += (["plots=false"] if args.no_plots else []) + (["tensorboard=true"] if args.tensorboard else [])
        if not args.arch and not args.print_config:
            raise UserError("give the architecture to train (GENOTYPE), or --resume DIR")
        if args.print_config:  # the recipe is the architecture's space's (the DARTS space's without one)
            if args.arch:  # what train would run: a search run's data and train section included
                from ..train.api import training_config

                print(dump(training_config(args.arch, base, overrides)), end="")
                return 0
            print(dump(resolve_config(base, overrides, arch=None)), end="")
            return 0
        result = train(args.arch, base, overrides=overrides, out=args.out, progress=not args.no_progress)
    from .common import _main_process

    if not _main_process():
        return 0  # under torchrun, rank 0 prints
    best = "" if result.best_acc is None else f" (best.pt: {result.best_acc:.2f} % on the {result.selected_on} split)"
    print(f"test accuracy: {result.test_acc:.2f} %{best}")
    print(f"run directory: {result.run_dir}")
    import shlex

    run = shlex.quote(str(result.run_dir))
    if (result.run_dir / "report.html").is_file():
        print(f"report: {result.run_dir / 'report.html'}")
    if (result.run_dir / "weights.pt").is_file():
        print(f"next: noisydarts predict {run} IMAGE_OR_DIR   |   noisydarts export {run}   |   "
              f"noisydarts evaluate {run}")
    else:
        print(f"continue: noisydarts train --resume {run}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 of a trained network on a test set",
                       description="Top-1 / top-5 accuracy of a trained network on the test split.")
    p.add_argument("source", metavar="RUN_DIR|WEIGHTS")
    p.add_argument("--data", metavar="NAME_OR_DIR", help="test data (default: what it was trained on)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from ..train import evaluate

    r = evaluate(args.source, args.data)
    if args.json:
        print(json.dumps(r))
        return 0
    top5 = "top-5 n/a (5 classes or fewer)" if r["top5"] is None else f"top-5 {r['top5']:.2f} %"
    print(f"top-1 {r['top1']:.2f} %  {top5}  ({r['images']} test images)")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a trained network as TorchScript or ONNX",
                       description="Write a trained network (eval mode, returns logits) as TorchScript or ONNX.")
    p.add_argument("source", metavar="RUN_DIR|WEIGHTS")
    p.add_argument("--format", default="torchscript", choices=["torchscript", "onnx"])
    p.add_argument("--out", metavar="FILE_OR_DIR", help="output file, or a directory (an existing one or a path ending "
                                                      "in /) for model.ts / model.onnx (default: beside the weights)")
    _common(p)
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from ..train import export

    import shlex

    path = export(args.source, args.format, args.out)
    print(f"wrote {path} (with its class names and preprocessing)")
    print(f"next: noisydarts predict {shlex.quote(str(path))} IMAGE_OR_DIR")
    return 0


# --- predict ------------------------------------------------------------------------------------

def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a trained network",
                       description="Print the top classes of each image by a trained network: a training run "
                                   "directory, a weights file, or an export (model.ts; model.onnx with onnxruntime). "
                                   "Images are decoded and preprocessed as in training (the run records how).")
    p.add_argument("source", metavar="RUN_OR_EXPORT", help="a training run directory, weights.pt/best.pt, model.ts "
                                                         "or model.onnx (a TorchScript file is code: only your own)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files, or folders of images (recursive)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes per image (default 5, at most the number "
                                                                  "of classes)")
    p.add_argument("--json", action="store_true", help="print a JSON list: [{image, top: [{class, index, prob}]}]")
    _common(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from ..train.predict import format_predictions, predict

    results = predict(args.source, args.images, top=args.top)
    print(json.dumps(results, indent=1) if args.json else format_predictions(results))
    return 0


COMMANDS = [_add_info, _add_zoo, _add_train, _add_evaluate, _add_export, _add_predict]
