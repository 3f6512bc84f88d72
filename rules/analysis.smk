# Stage 3, analysis: comparisons against the baseline, out-of-sample fidelity, the sweep
# report, the scheduler benchmarks and the summary.


rule compare_live:
    input:
        lambda wc: live_runs(seeds=[wc.seed]),
    output:
        f"{R}/metrics/live-{{seed}}.json",
    log:
        f"{R}/logs/compare-live-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/compare-live-{{seed}}.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        # Runs are matched by the policy's own name (run.json), which for a registered
        # baseline is its spec.
        baseline=POLICIES[BASE]["spec"],
    shell:
        "slaq compare {input} --baseline {params.baseline:q} --out {output} > {log} 2>&1"


rule compare_sim:
    input:
        lambda wc: [cell_dir("smooth", HEADLINE_LOAD, p, wc.seed) for p in POLICIES],
    output:
        f"{R}/metrics/sim-{{seed}}.json",
    log:
        f"{R}/logs/compare-sim-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/compare-sim-{{seed}}.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        baseline=POLICIES[BASE]["spec"],
    shell:
        "slaq compare {input} --baseline {params.baseline:q} --out {output} > {log} 2>&1"


rule fidelity:
    input:
        calibrate=live_runs(seeds=SEEDS[:1]),
        predict=live_runs(seeds=SEEDS[1:]),
    output:
        f"{R}/fidelity.json",
    log:
        f"{R}/logs/fidelity.log",
    benchmark:
        f"{R}/benchmarks/fidelity.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        baseline=POLICIES[BASE]["spec"],
    # Out of sample: calibrated on the first seed's runs, predicting the other seeds'.
    shell:
        "slaq fidelity --calibrate {input.calibrate} --predict {input.predict}"
        " --baseline {params.baseline:q} --out {output} > {log} 2>&1"


rule sweep_report:
    input:
        sweep_cells(),
    output:
        f"{R}/sweep/sweep.json",
    log:
        f"{R}/logs/sweep-report.log",
    benchmark:
        f"{R}/benchmarks/sweep-report.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        baseline=report_label(POLICIES[BASE]["spec"], POLICIES[BASE].get("args")),
    shell:
        "slaq sweep report --runs {input} --baseline {params.baseline:q}"
        " --out {output} > {log} 2>&1"


rule overhead:
    output:
        f"{R}/overhead.json",
    log:
        f"{R}/logs/overhead.log",
    benchmark:
        f"{R}/benchmarks/overhead.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        jobs=",".join(map(str, config["overhead"]["jobs"])),
        cores=",".join(map(str, config["overhead"]["cores"])),
        repeat=config["overhead"]["repeat"],
    shell:
        "slaq bench epoch --jobs {params.jobs} --cores {params.cores}"
        " --repeat {params.repeat} --out {output} > {log} 2>&1"


rule prediction:
    input:
        runs=live_runs(),
        library=[f"{R}/curves/library.parquet"] if RUN_SWEEP else [],
    output:
        f"{R}/prediction.json",
    log:
        f"{R}/logs/prediction.log",
    benchmark:
        f"{R}/benchmarks/prediction.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        library=lambda wc, input: f"--library {input.library[0]}" if input.library else "",
    shell:
        "slaq bench prediction --trace {input.runs} {params.library} --out {output}"
        " > {log} 2>&1"


rule summary:
    input:
        live=live_metrics(),
        sim=sim_metrics(),
        fidelity=fidelity_files(),
        overhead=f"{R}/overhead.json",
        prediction=f"{R}/prediction.json",
        sweep=sweep_report(),
        premise=premise_report(),
        scaling=scaling_report(),
        runs=live_runs(),
        figures=figure_files(),
    output:
        report(f"{R}/summary.md", caption="../paper-figures/captions/summary.rst", category="Summary"),
    log:
        f"{R}/logs/summary.log",
    benchmark:
        f"{R}/benchmarks/summary.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        name=config["name"],
        optional=lambda wc, input: " ".join(
            f"--{k} {input[k][0]}" for k in ("sweep", "premise", "scaling") if input[k]
        ),
    shell:
        "slaq summary --live {input.live} --sim {input.sim} --fidelity {input.fidelity}"
        " --overhead {input.overhead} --prediction {input.prediction} {params.optional}"
        " --runs {input.runs} --figures {input.figures} --name {params.name} --out {output}"
        " > {log} 2>&1"
