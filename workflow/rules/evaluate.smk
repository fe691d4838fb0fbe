from peftlab.study.run_names import is_base_run


def _train_record(wc):
    return [] if is_base_run(wc.model) else [f"{OUT}/runs/{wc.model}/train.json"]


def _run_dir(wc):
    return "''" if is_base_run(wc.model) else f"{OUT}/runs/{wc.model}"


# Each notebook gets its own keys only (`peftlab.study params --notebook`): the notebook refuses a
# run key it does not use.


# One job per (model, task), as a cluster runs them side by side; `--config eval_jobs=per_model`
# makes one job per model (one kernel start and one model load for all its tasks), which
# `peftlab study` passes for local profiles, where jobs run one after another.
EVAL_JOBS = config.get("eval_jobs", "per_task")
if EVAL_JOBS not in ("per_task", "per_model"):
    raise ValueError(f"eval_jobs={EVAL_JOBS!r} is not allowed; allowed: per_task, per_model")


if EVAL_JOBS == "per_model":

    rule evaluate_model:
        input:
            _train_record,
        output:
            [f"{OUT}/runs/{{model}}/eval-{task}.json" for task in PLAN.eval_tasks],
        params:
            folder=f"{OUT}/runs/{{model}}",
            run_dir=_run_dir,
            cores=job_cores,
        log:
            f"{OUT}/logs/evaluate-{{model}}.log",
        threads: JOB_THREADS
        resources:
            accelerator=1,
        shell:
            "mkdir -p {params.folder} && "
            "{PY} -m peftlab.study params {STUDY} {wildcards.model} --notebook evaluate > {params.folder}/params-eval.yaml && "
            "( TQDM_MININTERVAL=5 {PY} -m peftlab.study.slots {SLOT_ARGS} --cores {params.cores} -- "
            "{PY} -m peftlab.study.run_notebook --log-output notebooks/evaluate.ipynb {params.folder}/evaluate.ipynb "
            "-f {params.folder}/params-eval.yaml -p run_dir {params.run_dir} "
            "--cwd notebooks > {log} 2>&1 "
            "|| {PY} -m peftlab.study accept-failed {output} 2>> {log} )"


else:

    rule evaluate:
        input:
            _train_record,
        output:
            f"{OUT}/runs/{{model}}/eval-{{task}}.json",
        params:
            folder=f"{OUT}/runs/{{model}}",
            run_dir=_run_dir,
            cores=job_cores,
        log:
            f"{OUT}/logs/evaluate-{{model}}-{{task}}.log",
        threads: JOB_THREADS
        resources:
            accelerator=1,
        shell:
            "mkdir -p {params.folder} && "
            "{PY} -m peftlab.study params {STUDY} {wildcards.model} --task {wildcards.task} --notebook evaluate "
            "> {params.folder}/params-eval-{wildcards.task}.yaml && "
            "( TQDM_MININTERVAL=5 {PY} -m peftlab.study.slots {SLOT_ARGS} --cores {params.cores} -- "
            "{PY} -m peftlab.study.run_notebook --log-output notebooks/evaluate.ipynb {params.folder}/evaluate-{wildcards.task}.ipynb "
            "-f {params.folder}/params-eval-{wildcards.task}.yaml -p run_dir {params.run_dir} "
            "--cwd notebooks > {log} 2>&1 "
            "|| {PY} -m peftlab.study accept-failed {output} 2>> {log} )"
