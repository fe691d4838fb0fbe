from peftlab.study.run_names import TRAIN_RUN_WILDCARD


# A run's record is its target. A failure is recorded (status failed) and accepted so the
# other jobs go on; an interrupted run leaves no record and is redone on the next start.
rule train:
    output:
        f"{OUT}/runs/{{run}}/train.json",
    params:
        config_hash=lambda wc: job_train_hash(PLAN, wc.run),  # a changed config reruns the job
        folder=f"{OUT}/runs/{{run}}",
        cores=job_cores,
    log:
        f"{OUT}/logs/train-{{run}}.log",
    threads: JOB_THREADS
    resources:
        accelerator=1,
    wildcard_constraints:
        run=TRAIN_RUN_WILDCARD,  # an untuned base model has no training run
    shell:
        "mkdir -p {params.folder} && "
        "{PY} -m peftlab.study params {STUDY} {wildcards.run} --notebook train > {params.folder}/params-train.yaml && "
        "( TQDM_MININTERVAL=5 {PY} -m peftlab.study.slots {SLOT_ARGS} --cores {params.cores} -- "
        "{PY} -m peftlab.study.run_notebook --log-output notebooks/train.ipynb {params.folder}/train.ipynb -f {params.folder}/params-train.yaml "
        "--cwd notebooks > {log} 2>&1 "
        "|| {PY} -m peftlab.study accept-failed {output} 2>> {log} )"
