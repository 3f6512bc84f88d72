# slaq-repro pipeline, by stage: data (datasets, workloads, curve library) -> runs (live on
# Spark, replays, load-sweep cells, premise benchmark) -> analysis (comparisons, fidelity,
# sweep report, benchmarks, summary) -> figures. Everything is written under results_dir.
#
#   snakemake --cores 2                                  # offline default (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml   # CI smoke run on tiny data
#   snakemake --cores 2 --config 'seeds=[0,1,2]'         # override single keys
#   snakemake --cores 2 reference_figures                # refresh the committed figures
#   snakemake --report report.html                       # after a run
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# Each config file is complete on its own. Snakemake deep-merges --configfile over the
# `configfile:` below, so it is read only when no --configfile was given: otherwise smoke and
# paper runs would silently inherit every key they do not set from the default.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/runs.smk"
include: "rules/figures.smk"
include: "rules/analysis.smk"


report: "paper-figures/captions/workflow.rst"


rule all:
    input:
        f"{R}/summary.md",
        figure_files(),
        sweep_report(),
        premise_report(),
        scaling_report(),
        f"{R}/curves/library.parquet" if RUN_SWEEP else [],
        # Every run directory, so that deleting one reruns it and what depends on it.
        live_runs(),
        replay_runs(),
        sweep_cells(),
    default_target: True
