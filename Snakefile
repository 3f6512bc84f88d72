# slaq-repro pipeline: datasets -> workloads -> live runs (policy x seed) -> simulations
# (paper scale) -> metrics -> figures -> summary.
#
#   snakemake --cores 2                                  # offline default (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml   # CI smoke run on tiny data
#   snakemake --cores 2 --config 'policies=["slaq","fair","mypkg.mod:MyPolicy"]'
#   snakemake --report report.html                       # after a run
import json
import os
import re
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml", set_default=True)

# Commands (slaq, python) resolve to the environment running Snakemake, so
# `.venv/bin/snakemake` works without an activated venv.
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

# One Spark cluster at a time: live runs each take this resource, simulations do not.
workflow.global_resources.setdefault("spark_cluster", 1)

PLOTS = str(Path(workflow.basedir) / "paper-figures" / "plots.py")
R = config["results_dir"]
F = config["figures_dir"]
SEEDS = config["seeds"]
LIVE = config["live"]
SIMC = config["simulation"]


def slug(spec):
    """File-name-safe form of a policy spec (dotted paths contain ':' and '.')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", spec)


POLICIES = {slug(p): p for p in config["policies"]}
if config["baseline"] not in config["policies"]:
    raise ValueError(
        f"baseline {config['baseline']!r} must be one of the policies {config['policies']}"
    )
BASE = slug(config["baseline"])
RUN_LIVE = LIVE["enabled"]
RUN_SIM = SIMC["enabled"]
if RUN_SIM and SIMC["source"] == "live" and not RUN_LIVE:
    raise ValueError("simulation.source 'live' needs live.enabled: true (or use 'synthetic')")
LIVE_CORES = LIVE["workers"] * LIVE["cores_per_worker"]


wildcard_constraints:
    policy="[A-Za-z0-9_-]+",
    seed="[0-9]+",


def policy_flags(spec, section):
    """--policy-arg flags: config['policy_args'], then the live/simulation section's own."""
    args = {**config["policy_args"].get(spec, {}), **section["policy_args"].get(spec, {})}
    return " ".join(f"--policy-arg {k}={json.dumps(v)}" for k, v in args.items())


def live_policy_args(wildcards):
    return policy_flags(POLICIES[wildcards.policy], LIVE)


def sim_policy_args(wildcards):
    return policy_flags(POLICIES[wildcards.policy], SIMC)


def wanted_figures():
    names = ["b_delay", "e_overhead", "f_prediction"]
    if RUN_LIVE or RUN_SIM:
        names.append("a_quality")
    if RUN_LIVE:
        names += ["c_cores", "d_returns", "g_fidelity"]
    return sorted(names)


def live_metrics():
    return expand(f"{R}/metrics/live-{{seed}}.json", seed=SEEDS) if RUN_LIVE else []


def sim_metrics():
    return expand(f"{R}/metrics/sim-{{seed}}.json", seed=SEEDS) if RUN_SIM else []


def fidelity_files():
    if not RUN_LIVE:
        return []
    return expand(f"{R}/fidelity/{{policy}}-{{seed}}.json", policy=POLICIES, seed=SEEDS)


report: "paper-figures/captions/workflow.rst"


def run_dirs():
    """Every run directory, so that deleting one reruns it and what depends on it."""
    modes = (["live", "replay"] if RUN_LIVE else []) + (["sim"] if RUN_SIM else [])
    return expand(f"{R}/{{mode}}/{{policy}}-{{seed}}", mode=modes, policy=POLICIES, seed=SEEDS)


rule all:
    input:
        f"{R}/summary.md",
        expand(f"{F}/{{fig}}.png", fig=wanted_figures()),
        run_dirs(),


rule datasets:
    output:
        f"{R}/datasets.json",
    log:
        f"{R}/logs/datasets.log",
    benchmark:
        f"{R}/benchmarks/datasets.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        names=sorted({t["dataset"] for t in LIVE.get("workload", {}).get("templates", [])}),
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
        "config/environment.yaml"
    threads: 1
    params:
        spec=json.dumps(LIVE.get("workload", {})),
        name=f"{config['name']}-live",
    shell:
        "slaq workload --spec {params.spec:q} --name {params.name} --seed {wildcards.seed}"
        " --out {output} > {log} 2>&1"


rule live_run:
    input:
        workload=f"{R}/workloads/live-{{seed}}.yaml",
        datasets=f"{R}/datasets.json",
    output:
        directory(f"{R}/live/{{policy}}-{{seed}}"),
    log:
        f"{R}/logs/live-{{policy}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/live-{{policy}}-{{seed}}.tsv"
    conda:
        "config/environment.yaml"
    # The Spark cluster uses every core of the machine; running anything beside it would
    # distort its timings, so a live run asks for more threads than any machine has and
    # Snakemake scales that down to all of its --cores.
    threads: 4096
    resources:
        spark_cluster=1,
    params:
        spec=lambda wc: POLICIES[wc.policy],
        args=live_policy_args,
        cluster=LIVE["cluster"],
        workers=LIVE["workers"],
        cpw=LIVE["cores_per_worker"],
        mem=LIVE["memory_per_worker"],
        epoch=LIVE["epoch_s"],
        data_dir=config["data_dir"],
    shell:
        "slaq run --workload {input.workload} --policy '{params.spec}' {params.args}"
        " --cluster {params.cluster} --workers {params.workers}"
        " --cores-per-worker {params.cpw} --worker-memory {params.mem}"
        " --epoch {params.epoch} --seed {wildcards.seed} --data-dir {params.data_dir}"
        " --quiet --out {output} > {log} 2>&1"


rule sim_workload:
    output:
        f"{R}/workloads/sim-{{seed}}.yaml",
    log:
        f"{R}/logs/workload-sim-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/workload-sim-{{seed}}.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        spec=json.dumps(
            {k: SIMC[k] for k in ("n_jobs", "mean_interarrival_s", "templates") if k in SIMC}
        ),
        name=f"{config['name']}-sim",
    shell:
        "slaq workload --spec {params.spec:q} --name {params.name} --seed {wildcards.seed}"
        " --out {output} > {log} 2>&1"


def sim_source(wildcards):
    if SIMC["source"] == "live":
        return {"pool": f"{R}/live/{BASE}-{wildcards.seed}"}
    return {"workload": f"{R}/workloads/sim-{wildcards.seed}.yaml"}


def sim_source_flags(wildcards, input):
    if SIMC["source"] == "live":
        return (
            f"--pool {input.pool} --n-jobs {SIMC['n_jobs']}"
            f" --mean-interarrival {SIMC['mean_interarrival_s']}"
            f" --work-scale {SIMC['work_scale']} --overhead {SIMC['overhead_s']}"
        )
    return f"--workload {input.workload}"


rule simulate:
    input:
        unpack(sim_source),
    output:
        directory(f"{R}/sim/{{policy}}-{{seed}}"),
    log:
        f"{R}/logs/sim-{{policy}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/sim-{{policy}}-{{seed}}.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        spec=lambda wc: POLICIES[wc.policy],
        args=sim_policy_args,
        source=sim_source_flags,
        cores=SIMC["cores"],
        epoch=SIMC["epoch_s"],
    shell:
        "slaq simulate {params.source} --policy '{params.spec}' {params.args}"
        " --cores {params.cores} --epoch {params.epoch} --seed {wildcards.seed} --quiet"
        " --out {output} > {log} 2>&1"


rule replay_live:
    input:
        f"{R}/live/{{policy}}-{{seed}}",
    output:
        directory(f"{R}/replay/{{policy}}-{{seed}}"),
    log:
        f"{R}/logs/replay-{{policy}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/replay-{{policy}}-{{seed}}.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        spec=lambda wc: POLICIES[wc.policy],
        args=live_policy_args,
        cores=LIVE_CORES,
        epoch=LIVE["epoch_s"],
    shell:
        "slaq simulate --trace {input} --policy '{params.spec}' {params.args}"
        " --cores {params.cores} --epoch {params.epoch} --seed {wildcards.seed} --quiet"
        " --out {output} > {log} 2>&1"


rule fidelity:
    input:
        live=f"{R}/live/{{policy}}-{{seed}}",
        replay=f"{R}/replay/{{policy}}-{{seed}}",
    output:
        f"{R}/fidelity/{{policy}}-{{seed}}.json",
    log:
        f"{R}/logs/fidelity-{{policy}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/fidelity-{{policy}}-{{seed}}.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    shell:
        "slaq fidelity {input.live} {input.replay} --out {output} > {log} 2>&1"


rule compare:
    input:
        lambda wc: expand(f"{R}/{wc.mode}/{{policy}}-{wc.seed}", policy=POLICIES),
    output:
        f"{R}/metrics/{{mode}}-{{seed}}.json",
    log:
        f"{R}/logs/compare-{{mode}}-{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/compare-{{mode}}-{{seed}}.tsv"
    wildcard_constraints:
        mode="live|sim",
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        baseline=config["baseline"],
    shell:
        "slaq compare {input} --baseline '{params.baseline}' --out {output} > {log} 2>&1"


rule overhead:
    output:
        f"{R}/overhead.json",
    log:
        f"{R}/logs/overhead.log",
    benchmark:
        f"{R}/benchmarks/overhead.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        jobs=",".join(map(str, config["overhead"]["jobs"])),
        cores=",".join(map(str, config["overhead"]["cores"])),
        repeat=config["overhead"]["repeat"],
    shell:
        "slaq bench overhead --jobs {params.jobs} --cores {params.cores}"
        " --repeat {params.repeat} --out {output} > {log} 2>&1"


rule prediction:
    input:
        expand(f"{R}/live/{{policy}}-{{seed}}", policy=POLICIES, seed=SEEDS) if RUN_LIVE else [],
    output:
        f"{R}/prediction.json",
    log:
        f"{R}/logs/prediction.log",
    benchmark:
        f"{R}/benchmarks/prediction.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    shell:
        "slaq bench prediction --trace {input} --out {output} > {log} 2>&1"


def figure_report(name):
    return report(
        f"{F}/{name}.png",
        caption=f"paper-figures/captions/{name}.rst",
        category="Figures",
    )


rule fig_quality:
    input:
        live=live_metrics(),
        sim=sim_metrics(),
    output:
        figure_report("a_quality"),
    log:
        f"{R}/logs/fig-a_quality.log",
    benchmark:
        f"{R}/benchmarks/fig-a_quality.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} quality --live {input.live} --sim {input.sim}"
        " --out {output} > {log} 2>&1"


rule fig_delay:
    input:
        live=live_metrics(),
        sim=sim_metrics(),
    output:
        figure_report("b_delay"),
    log:
        f"{R}/logs/fig-b_delay.log",
    benchmark:
        f"{R}/benchmarks/fig-b_delay.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} delay --live {input.live} --sim {input.sim}"
        " --out {output} > {log} 2>&1"


rule fig_cores:
    input:
        expand(f"{R}/live/{{policy}}-{{seed}}", policy=POLICIES, seed=SEEDS[0]),
    output:
        figure_report("c_cores"),
    log:
        f"{R}/logs/fig-c_cores.log",
    benchmark:
        f"{R}/benchmarks/fig-c_cores.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} cores --runs {input} --out {output} > {log} 2>&1"


rule fig_returns:
    input:
        expand(f"{R}/live/{{policy}}-{{seed}}", policy=POLICIES, seed=SEEDS),
    output:
        figure_report("d_returns"),
    log:
        f"{R}/logs/fig-d_returns.log",
    benchmark:
        f"{R}/benchmarks/fig-d_returns.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} returns --runs {input} --out {output} > {log} 2>&1"


rule fig_overhead:
    input:
        f"{R}/overhead.json",
    output:
        figure_report("e_overhead"),
    log:
        f"{R}/logs/fig-e_overhead.log",
    benchmark:
        f"{R}/benchmarks/fig-e_overhead.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} overhead --input {input} --out {output} > {log} 2>&1"


rule fig_prediction:
    input:
        f"{R}/prediction.json",
    output:
        figure_report("f_prediction"),
    log:
        f"{R}/logs/fig-f_prediction.log",
    benchmark:
        f"{R}/benchmarks/fig-f_prediction.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} prediction --input {input} --out {output} > {log} 2>&1"


rule fig_fidelity:
    input:
        fidelity_files(),
    output:
        figure_report("g_fidelity"),
    log:
        f"{R}/logs/fig-g_fidelity.log",
    benchmark:
        f"{R}/benchmarks/fig-g_fidelity.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
    shell:
        "python {params.script} fidelity --runs {input} --out {output} > {log} 2>&1"


rule summary:
    input:
        live=live_metrics(),
        sim=sim_metrics(),
        fidelity=fidelity_files(),
        overhead=f"{R}/overhead.json",
        prediction=f"{R}/prediction.json",
        figures=expand(f"{F}/{{fig}}.png", fig=wanted_figures()),
    output:
        report(f"{R}/summary.md", caption="paper-figures/captions/summary.rst", category="Summary"),
    log:
        f"{R}/logs/summary.log",
    benchmark:
        f"{R}/benchmarks/summary.tsv"
    conda:
        "config/environment.yaml"
    threads: 1
    params:
        name=config["name"],
    shell:
        "slaq summary --live {input.live} --sim {input.sim} --fidelity {input.fidelity}"
        " --overhead {input.overhead} --prediction {input.prediction}"
        " --figures {input.figures} --name {params.name} --out {output} > {log} 2>&1"
