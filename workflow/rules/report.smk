# The report reads only result records; failed runs are in them, marked failed.
rule report:
    input:
        [f"{OUT}/runs/{model}/eval-{task}.json" for model, task in PLAN.eval_targets()],
    output:
        html=f"{OUT}/report/report.html",
        pdf=f"{OUT}/report/report.pdf",
        table=f"{OUT}/report/table1.csv",
    log:
        f"{OUT}/logs/report.log",
    threads: 1
    shell:
        f"{PY} -m peftlab.report {PLAN.study} > {{log}} 2>&1"
