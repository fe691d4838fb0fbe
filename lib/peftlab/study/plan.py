"""A study file declares a grid; this module validates it and expands it into jobs.

params/studies/<name>.yaml:
  description: text
  trained_base_models: [embedded]      # base models that are fine-tuned
  untuned_base_models: [embedded]      # base models evaluated as they are
  methods: {full: [null], lora: [8, 16], dora: [16], vera: [64]}   # method -> ranks
  train_tasks: [openmath, squad_v2]
  eval_tasks: [arc, openmath, squad_v2]
  seeds: [0]
  protocol: corrected
  overrides: {n_train: 64}             # any run key (params/defaults.yaml), for every job
  method_overrides: {full: {learning_rate: 2.0e-5}}   # per method

Every job gets a readable name (`openmath-dora-r16-s0`, `base-embedded`; peftlab.study.run_names) and a full,
validated run configuration; the run's identity hash is in its record.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from peftlab.config import METHODS, NOTEBOOK_KEYS, PROTOCOLS, TASKS, TEST_HOOKS, resolve_config, validate
from peftlab.config import train_hash as run_identity_hash
from peftlab.core.errors import ConfigError, PeftlabError
from peftlab.core.files import ResultError, read_record
from peftlab.core.paths import params_dir, repo_root, resolve_path
from peftlab.core.yamlio import read_yaml
from peftlab.methods.registry import METHODS as METHOD_REGISTRY
from peftlab.methods.registry import check_method_fits
from peftlab.study.run_names import base_run_name, short_name, train_run_name
from peftlab.study.slots import parse_gpus

STUDY_KEYS = {
    "description": "a sentence on what the study is for",
    "trained_base_models": "a list of base models to fine-tune (may be empty)",
    "untuned_base_models": "a list of base models to evaluate untuned (may be empty)",
    "methods": f"a mapping of method ({', '.join(METHODS)}) to a list of ranks (null for full)",
    "train_tasks": f"a list of {', '.join(TASKS)}",
    "eval_tasks": f"a non-empty list of {', '.join(TASKS)}",
    "seeds": "a non-empty list of integers >= 0",
    "protocol": ", ".join(PROTOCOLS),
    "overrides": "a mapping of run keys (params/defaults.yaml) to values",
    "method_overrides": "a mapping of method to a mapping of run keys",
}


@dataclass
class Job:
    name: str  # the run directory's name
    kind: str  # train | base
    config: dict  # the full validated run configuration


@dataclass
class Plan:
    study: str
    out: Path
    description: str
    train: dict[str, Job] = field(default_factory=dict)
    base: dict[str, Job] = field(default_factory=dict)
    eval_tasks: list[str] = field(default_factory=list)

    @property
    def models(self) -> dict[str, Job]:
        return {**self.train, **self.base}

    def eval_targets(self) -> list[tuple[str, str]]:
        return [(model, task) for model in self.models for task in self.eval_tasks]


def _fail(study: str, key: str, value, allowed: str) -> None:
    raise ConfigError(f"study {study!r} key '{key}': {value!r} is not allowed; allowed: {allowed}")


def study_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = params_dir() / "studies" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (params_dir() / "studies").glob("*.yaml"))
        raise ConfigError(f"study {name!r} does not exist; known studies: {', '.join(known)}")
    return path


def load_plan(name: str) -> Plan:
    """Validate a study file and expand it into train and evaluate jobs."""
    path = study_path(name)
    study = Path(path).stem
    spec = read_yaml(path, what="study file")
    unknown = sorted(set(spec) - set(STUDY_KEYS))
    if unknown:
        raise ConfigError(f"study {study!r}: unknown key(s) {unknown}; allowed keys: {', '.join(STUDY_KEYS)}")
    trained = spec.get("trained_base_models", [])
    untuned = spec.get("untuned_base_models", [])
    methods = spec.get("methods", {}) or {}
    train_tasks = spec.get("train_tasks", [])
    seeds = spec.get("seeds", [0])
    for key, value in (
        ("trained_base_models", trained),
        ("untuned_base_models", untuned),
        ("train_tasks", train_tasks),
        ("seeds", seeds),
    ):
        if not isinstance(value, list):
            _fail(study, key, value, STUDY_KEYS[key])
    if not isinstance(methods, dict) or any(m not in METHODS for m in methods):
        _fail(study, "methods", methods, STUDY_KEYS["methods"])
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        _fail(study, "seeds", seeds, STUDY_KEYS["seeds"])
    overrides = spec.get("overrides", {}) or {}
    method_overrides = spec.get("method_overrides", {}) or {}
    if not isinstance(overrides, dict):
        _fail(study, "overrides", overrides, STUDY_KEYS["overrides"])
    if not isinstance(method_overrides, dict) or any(
        m not in METHODS or not isinstance(v, dict) for m, v in method_overrides.items()
    ):
        _fail(study, "method_overrides", method_overrides, STUDY_KEYS["method_overrides"])
    for method, values in method_overrides.items():
        validate(values, source=f"study {study!r} method_overrides.{method}")
    common = {**validate(overrides, source=f"study {study!r} overrides")}
    if "protocol" in spec:
        common["protocol"] = spec["protocol"]
    if "eval_tasks" in spec:
        common["eval_tasks"] = spec["eval_tasks"]
    defaults = resolve_config(overrides=common)  # validates protocol and eval_tasks too
    out = resolve_path(f"outputs/{study}")
    plan = Plan(study=study, out=out, description=spec.get("description", ""), eval_tasks=defaults["eval_tasks"])

    several_bases = len(trained) > 1
    for base in trained:
        for task in train_tasks:
            for method, ranks in methods.items():
                if not isinstance(ranks, list) or not ranks:
                    _fail(
                        study,
                        f"methods.{method}",
                        ranks,
                        "a non-empty list of ranks ([null] for a method without rank: "
                        + ", ".join(m for m, spec in METHOD_REGISTRY.items() if not spec.ranked)
                        + ")",
                    )
                ranked = METHOD_REGISTRY[method].ranked
                if not ranked and ranks != [None]:
                    _fail(study, f"methods.{method}", ranks, f"[null] ({method} takes no rank)")
                if ranked and None in ranks:
                    _fail(study, f"methods.{method}", ranks, f"a list of ranks >= 1 ({method} takes a rank)")
                for rank in ranks:
                    for seed in seeds:
                        name = train_run_name(
                            task,
                            method,
                            rank if ranked else None,
                            seed,
                            base_prefix=short_name(base) if several_bases else "",
                        )
                        values = {
                            **common,
                            **method_overrides.get(method, {}),
                            "base_model": base,
                            "method": method,
                            "train_task": task,
                            "seed": seed,
                        }
                        if ranked:
                            values["rank"] = rank
                        values["out_dir"] = str(out / "runs" / name)
                        plan.train[name] = Job(name, "train", resolve_config(overrides=values))
    for base in untuned:
        name = base_run_name(base)
        values = {**common, "base_model": base, "out_dir": str(out / "runs" / name)}
        plan.base[name] = Job(name, "base", resolve_config(overrides=values))
    if not plan.train and not plan.base:
        raise ConfigError(
            f"study {study!r} expands to no job: give trained_base_models with methods and "
            "train_tasks, or untuned_base_models"
        )
    return plan


def check_plan(plan: Plan) -> None:
    """What validating each run's keys cannot see: every trained configuration fits its base model
    (rank, target_modules), checked against the architecture built without weights."""
    seen = set()
    for job in plan.train.values():
        cfg = job.config
        key = (cfg["base_model"], cfg["method"], cfg["rank"], tuple(cfg["target_modules"]))
        if key not in seen:
            seen.add(key)
            try:
                check_method_fits(cfg)
            except ConfigError as exc:
                raise ConfigError(f"study {plan.study!r} job {job.name}: {exc}") from None


def job_params(plan: Plan, name: str, task: str | None = None, notebook: str | None = None) -> dict:
    """The flat parameters papermill passes to a notebook for one job: that notebook's keys (every
    run key without `notebook`), and a test hook only where the study sets one."""
    if name not in plan.models:
        raise ConfigError(f"study {plan.study!r} has no job {name!r}; jobs: {', '.join(plan.models)}")
    params = dict(plan.models[name].config)
    if task is not None:
        params["eval_tasks"] = [task]
    if notebook is None:
        return params
    hooks = {key: params[key] for key in TEST_HOOKS if params.get(key) is not None}
    return {key: params[key] for key in NOTEBOOK_KEYS[notebook]} | hooks


def job_train_hash(plan: Plan, name: str) -> str:
    return run_identity_hash(plan.train[name].config)


def _snakemake_running_in(directory: Path) -> bool:
    import psutil

    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if (
                "snakemake" in cmd
                and "--unlock" not in cmd
                and proc.pid != os.getpid()
                and Path(proc.info["cwd"] or "/").resolve() == directory.resolve()
            ):
                return True
        except (psutil.Error, OSError):
            continue
    return False


def _profile_dir(profile: str) -> Path:
    path = resolve_path(profile)
    if not (path / "config.yaml").is_file() and not (path / "profile.yaml").is_file():
        known = sorted(str(p.parent.relative_to(repo_root())) for p in (repo_root() / "profiles").glob("*/config.yaml"))
        raise ConfigError(
            f"profile {profile!r} does not exist (no config.yaml in {path}); "
            f"profiles: {', '.join(known)} (profiles/default was renamed profiles/local)"
        )
    return path


def _is_local_profile(path: Path) -> bool:
    settings = yaml.safe_load((path / "config.yaml").read_text()) or {}
    return settings.get("executor", "local") == "local"


def local_slots(profile: str, gpus: str | int | None) -> int | None:
    """Jobs at once for a local profile (one per GPU; `gpus` checked), None for a cluster profile,
    where `gpus` is refused: the cluster's own GPU requests decide."""
    if _is_local_profile(_profile_dir(profile)):
        return parse_gpus(gpus)
    if gpus not in (None, "", "auto"):
        raise ConfigError(
            f"GPUS={gpus!r} applies to local profiles only; {profile} submits each job with its own "
            "GPU request (gres in its config.yaml), and `jobs:` there sets how many run at once"
        )
    return None


def run_study(
    study: str,
    *,
    profile: str = "profiles/local",
    directory: str | None = None,
    config: list[str] | None = None,
    gpus: str | int | None = None,
    snakemake_args: list[str] | None = None,
) -> int:
    """`snakemake --profile ... --config study=...`; a lock left by a killed run (no Snakemake
    alive in that directory) is cleared first, so a killed study simply starts again.
    With a local profile, `gpus` jobs run at once, one per GPU (default: the GPUs detected;
    1 on a CPU-only machine); see peftlab.study.slots."""
    import subprocess

    # The whole study is validated here, so a mistake is one message before Snakemake starts.
    check_plan(load_plan(study))
    workdir = Path(directory).resolve() if directory else repo_root()
    profile_dir = _profile_dir(profile)
    slots = local_slots(profile, gpus)
    extra: list[str] = []
    if slots is not None:
        extra = ["--resources", f"accelerator={slots}"]
        if not any(entry.startswith("eval_jobs=") for entry in config or []):
            config = [*(config or []), "eval_jobs=per_model"]  # one machine: one load per model
        print(
            f"local run: {slots} job(s) at once ({'one per GPU' if slots > 1 else 'all cores each'})", file=sys.stderr
        )
    snakemake = str(Path(sys.executable).parent / "snakemake")
    base = [
        snakemake,
        "-s",
        str(repo_root() / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(profile_dir),
    ]
    locks = workdir / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()) and not _snakemake_running_in(workdir):
        print("clearing a stale Snakemake lock left by an interrupted run", file=sys.stderr)
        subprocess.run(base + ["--unlock", "--config", f"study={study}"], check=True, capture_output=True)
    return subprocess.run(
        base + extra + [*(snakemake_args or []), "--config", f"study={study}", *(config or [])], cwd=workdir
    ).returncode


def main(argv: list[str] | None = None) -> int:
    """Small commands the workflow's shell rules call."""
    parser = argparse.ArgumentParser(prog="python -m peftlab.study")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help="write a job's papermill parameters (YAML) to stdout")
    p.add_argument("study")
    p.add_argument("job")
    p.add_argument("--task")
    p.add_argument("--notebook", choices=tuple(NOTEBOOK_KEYS), help="only the keys this notebook's parameters cell has")
    f = sub.add_parser("accept-failed", help="exit 0 if every result file exists and one records a failure")
    f.add_argument("result", nargs="+")
    s = sub.add_parser("show", help="list a study's jobs")
    s.add_argument("study")
    r = sub.add_parser("run", help="run a study with Snakemake, clearing a stale lock left by a killed run")
    r.add_argument("study")
    r.add_argument("--profile", default="profiles/local")
    r.add_argument(
        "--gpus",
        default=None,
        help="local profiles: jobs at once, one per GPU (default: the GPUs detected, 1 without any)",
    )
    r.add_argument("--directory", default=None, help="Snakemake's working directory (default: the project root)")
    r.add_argument(
        "--config",
        nargs="*",
        default=[],
        dest="extra_config",
        help="more `key=value` Snakemake config entries (e.g. retry_failed=1)",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            return run_study(
                args.study, profile=args.profile, directory=args.directory, config=args.extra_config, gpus=args.gpus
            )
        except (PeftlabError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "params":
        yaml.safe_dump(
            job_params(load_plan(args.study), args.job, args.task, args.notebook), sys.stdout, sort_keys=False
        )
        return 0
    if args.command == "accept-failed":
        failed = 0
        for result in args.result:  # a job evaluating several tasks writes one record each
            try:
                record = read_record(result)
            except ResultError as exc:
                print(f"no failure record: {exc}", file=sys.stderr)
                return 1
            if record["status"] == "failed":
                error = record.get("error", {})
                print(
                    f"{result}: recorded as failed ({error.get('phase')}): {error.get('type')}: {error.get('message')}",
                    file=sys.stderr,
                )
                failed += 1
        return 0 if failed else 1
    plan = load_plan(args.study)
    print(f"study {plan.study}: {len(plan.train)} train jobs, {len(plan.eval_targets())} evaluate jobs -> {plan.out}")
    for name, job in plan.models.items():
        print(f"  {job.kind:5s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
