# A run's record is its target. A failure is recorded (status failed) and accepted so the
# other jobs go on; an interrupted run leaves no record and is redone on the next start.
rule train:
    output:
        f"{OUT}/runs/{{run}}/train.json",
    params:
        config_hash=lambda wc: train_hash(PLAN, wc.run),  # a changed config reruns the job
        folder=f"{OUT}/runs/{{run}}",
    log:
        f"{OUT}/logs/train-{{run}}.log",
    threads: workflow.cores
    resources:
        accelerator=1,
        mem_mb=16000,
        runtime=240,
    wildcard_constraints:
        run="(?!base-)[^/]+",
    shell:
        "mkdir -p {params.folder} && "
        "{PY} -m peftlab.study params {STUDY} {wildcards.run} > {params.folder}/params-train.yaml && "
        "( OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} TQDM_MININTERVAL=5 "
        "{BIN}/papermill --log-output notebooks/train.ipynb {params.folder}/train.ipynb -f {params.folder}/params-train.yaml "
        "--cwd notebooks > {log} 2>&1 "
        "|| {PY} -m peftlab.study accept-failed {output} 2>> {log} )"
