# Stage 2, runs: live runs on Spark (policy x seed), their replays, the simulated load-sweep
# cells and the premise benchmark. Every policy gets the same arguments (config `policies`)
# in each of them.


rule live_run:
    input:
        workload=f"{R}/workloads/live-{{seed}}.yaml",
        datasets=f"{R}/datasets.json",
        policy_source=policy_inputs,
    output:
        directory(f"{R}/live/{{policy}}-{{seed}}"),
    log:
        f"{R}/logs/live-{{policy}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/live-{{policy}}-{{seed}}.tsv"
    conda:
        "../config/environment.yaml"
    # The Spark cluster uses every core of the machine; running anything beside it would
    # distort its timings, so a live run asks for more threads than any machine has and
    # Snakemake scales that down to all of its --cores.
    threads: 4096
    resources:
        spark_cluster=1,
    params:
        spec=lambda wc: POLICIES[wc.policy]["spec"],
        args=lambda wc: arg_flags(POLICIES[wc.policy].get("args")),
        cluster=LIVE["cluster"],
        workers=LIVE["workers"],
        cpw=LIVE["cores_per_worker"],
        mem=LIVE["memory_per_worker"],
        epoch=LIVE["epoch_s"],
        data_dir=config["data_dir"],
    shell:
        "slaq run --workload {input.workload} --policy {params.spec:q} {params.args}"
        " --cluster {params.cluster} --workers {params.workers}"
        " --cores-per-worker {params.cpw} --worker-memory {params.mem}"
        " --epoch {params.epoch} --seed {wildcards.seed} --data-dir {params.data_dir}"
        " --quiet --out {output} > {log} 2>&1"


rule replay_live:
    input:
        live=f"{R}/live/{{policy}}-{{seed}}",
        policy_source=policy_inputs,
    output:
        directory(f"{R}/replay/{{policy}}-{{seed}}"),
    log:
        f"{R}/logs/replay-{{policy}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/replay-{{policy}}-{{seed}}.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        spec=lambda wc: POLICIES[wc.policy]["spec"],
        args=lambda wc: arg_flags(POLICIES[wc.policy].get("args")),
        # Cores and epoch of the cluster the run actually had (run.json), not a config number:
        # an attached cluster's capacity is only known once the run has started.
        meta="import json, sys; m = json.load(open(sys.argv[1])); print(m[sys.argv[2]])",
    shell:
        "slaq simulate --trace {input.live} --policy {params.spec:q} {params.args}"
        " --cores $(python -c {params.meta:q} {input.live}/run.json cores)"
        " --epoch $(python -c {params.meta:q} {input.live}/run.json epoch_s)"
        " --seed {wildcards.seed} --quiet --out {output} > {log} 2>&1"


rule sweep_cell:
    input:
        library=f"{R}/curves/library.parquet",
        # The baseline's live runs: the sweep's iteration-time model adds the per-iteration
        # fixed cost Spark showed there to the library's measured CPU work.
        fixed_cost=lambda wc: live_runs(policies=[BASE]),
        policy_source=policy_inputs,
    output:
        directory(f"{R}/sweep/{{mix}}/load-{{load}}/{{variant}}/seed-{{seed}}"),
    log:
        f"{R}/logs/sweep/{{mix}}-{{load}}-{{variant}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/sweep/{{mix}}-{{load}}-{{variant}}-{{seed}}.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        spec=lambda wc: VARIANTS[wc.variant][0],
        args=lambda wc: arg_flags(VARIANTS[wc.variant][1]),
        fixed_cost=lambda wc, input: (
            f"--fixed-cost-from {' '.join(input.fixed_cost)}"
            if input.fixed_cost
            else f"--fixed-cost-s {SWEEP['fixed_cost_s']}"
        ),
        cores=SWEEP["cores"],
        n_jobs=SWEEP["n_jobs"],
        epoch=SWEEP["epoch_s"],
        work_scale=SWEEP["work_scale"],
    shell:
        "slaq sweep cell --library {input.library} --mix {wildcards.mix}"
        " --load {wildcards.load} --seed {wildcards.seed}"
        " --policy {params.spec:q} {params.args} --cores {params.cores}"
        " --n-jobs {params.n_jobs} --epoch-s {params.epoch} --work-scale {params.work_scale}"
        " {params.fixed_cost} --out {output} > {log} 2>&1"


rule premise:
    output:
        f"{R}/benchmarks/premise.json",
    log:
        f"{R}/logs/premise.log",
    benchmark:
        f"{R}/benchmarks/premise.tsv"
    conda:
        "../config/environment.yaml"
    # Saturates its own 8-slot local cluster: like a live run, it needs the machine alone.
    threads: 4096
    resources:
        spark_cluster=1,
    params:
        script=PREMISE,
        hold=config["premise"]["hold_s"],
        rows=config["premise"]["rows"],
        epoch=LIVE["epoch_s"],
    shell:
        "python {params.script} --hold {params.hold} --rows {params.rows}"
        " --epoch {params.epoch} --out {output} > {log} 2>&1"


rule scaling:
    output:
        json=f"{R}/benchmarks/scaling.json",
        png=f"{F}/i_scaling.png",
    log:
        f"{R}/logs/scaling.log",
    benchmark:
        f"{R}/benchmarks/scaling.tsv"
    conda:
        "../config/environment.yaml"
    # Its own local cluster, saturated: like a live run, it needs the machine alone.
    threads: 4096
    resources:
        spark_cluster=1,
    params:
        script=SCALING,
        quick="--quick" if config["scaling"]["quick"] else "",
    shell:
        "python {params.script} {params.quick} --out {output.json} --png {output.png}"
        " > {log} 2>&1"
