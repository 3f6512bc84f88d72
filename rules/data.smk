# Stage 1, data: datasets, seeded workloads, and the curve library the sweep draws from.


rule datasets:
    output:
        f"{R}/datasets.json",
    log:
        f"{R}/logs/datasets.log",
    benchmark:
        f"{R}/benchmarks/datasets.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        names=sorted(
            {t["dataset"] for t in LIVE["workload"]["templates"] + config["curves"]["templates"]}
        ),
        data_dir=config["data_dir"],
    shell:
        "slaq datasets fetch {params.names} --data-dir {params.data_dir} --manifest {output}"
        " > {log} 2>&1"


rule live_workload:
    output:
        f"{R}/workloads/live-{{seed}}.yaml",
    log:
        f"{R}/logs/workload-live-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/workload-live-{{seed}}.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        spec=json.dumps(LIVE["workload"]),
        name=f"{config['name']}-live",
    shell:
        "slaq workload --spec {params.spec:q} --name {params.name} --seed {wildcards.seed}"
        " --out {output} > {log} 2>&1"


rule curve_templates:
    output:
        f"{R}/curves/templates.yaml",
    log:
        f"{R}/logs/curve-templates.log",
    benchmark:
        f"{R}/benchmarks/curve-templates.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    # A file of its own (not the whole config) so that only a change of the templates, not of
    # any other key, rebuilds the library (Snakemake reruns a job whose params changed).
    params:
        templates=json.dumps({"templates": config["curves"]["templates"]}),
        to_yaml="import json, sys, yaml; yaml.safe_dump(json.loads(sys.argv[1]), sys.stdout, sort_keys=False)",
    shell:
        "python -c {params.to_yaml:q} {params.templates:q} > {output} 2> {log}"


rule curve_library:
    input:
        templates=f"{R}/curves/templates.yaml",
        datasets=f"{R}/datasets.json",
    output:
        f"{R}/curves/library.parquet",
    log:
        f"{R}/logs/curve-library.log",
    benchmark:
        f"{R}/benchmarks/curve-library.tsv"
    conda:
        "../config/environment.yaml"
    # Templates run in parallel, each at one BLAS thread (their CPU s stay one-core figures).
    threads: 2
    params:
        data_dir=config["data_dir"],
        min_iter=config["curves"]["min_iterations"],
        max_iter=config["curves"]["max_iterations"],
    shell:
        "slaq curves build --templates {input.templates} --data-dir {params.data_dir}"
        " --min-iterations {params.min_iter} --max-iterations {params.max_iter}"
        " --processes {threads} --out {output} > {log} 2>&1"
