import os

# Stage 4, figures: one rule over a table of figures, all written under results/. The
# committed reference figures (reference_dir) change only through the reference_figures target.

# name -> (figure of paper-figures/plots.py, its inputs by command-line flag). A figure is
# drawn when any of its inputs exists in this configuration (live or sweep may be off).
FIGURES = {
    "a_quality": ("quality", lambda: {"live": live_metrics(), "sim": sim_metrics()}),
    "b_delay": ("delay", lambda: {"live": live_metrics(), "sim": sim_metrics()}),
    "c_cores": ("cores", lambda: {"runs": live_runs(seeds=SEEDS[:1])}),
    "d_returns": ("returns", lambda: {"runs": live_runs()}),
    "e_overhead": ("overhead", lambda: {"input": [f"{R}/overhead.json"]}),
    "f_prediction": ("prediction", lambda: {"input": [f"{R}/prediction.json"]}),
    "g_fidelity": ("fidelity", lambda: {"runs": fidelity_files()}),
    "h_sweep": ("sweep", lambda: {"input": sweep_report()}),
}
WANTED = sorted(n for n, (_, inputs) in FIGURES.items() if any(inputs().values()))
CAPTION_TEXT = {n: (CAPTIONS / f"{n}.rst").read_text() for n in FIGURES}


rule figure:
    input:
        unpack(lambda wc: FIGURES[wc.fig][1]()),
    output:
        png=report(
            f"{F}/{{fig}}.png",
            caption="../paper-figures/captions/figure.rst",
            category="Figures",
        ),
        pdf=f"{F}/{{fig}}.pdf",
    log:
        f"{R}/logs/figure-{{fig}}.log",
    benchmark:
        f"{R}/benchmarks/figure-{{fig}}.tsv"
    wildcard_constraints:
        fig=alternatives(FIGURES),
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        script=PLOTS,
        kind=lambda wc: FIGURES[wc.fig][0],
        flags=figure_flags,
        caption=lambda wc: CAPTION_TEXT[wc.fig],
    shell:
        "python {params.script} {params.kind} {params.flags} --out {output.png} > {log} 2>&1"


# Explicit only (`snakemake --cores 2 reference_figures`): the default target never writes
# outside results_dir, so a default run leaves the checkout clean.
rule reference_figures:
    input:
        figures=figure_files(),
        summary=f"{R}/summary.md",
    output:
        figures=figure_files(directory=config["reference_dir"]),
        summary=f"{config['reference_dir']}/summary.md",
    log:
        f"{R}/logs/reference-figures.log",
    benchmark:
        f"{R}/benchmarks/reference-figures.tsv"
    conda:
        "../config/environment.yaml"
    threads: 1
    params:
        dest=lambda wc, output: Path(output.summary).parent,
        figdir=lambda wc: os.path.relpath(F, R),
    # The reference summary sits beside the reference figures, so its figure links drop the
    # results-relative folder.
    shell:
        "for f in {input.figures}; do cp -v $f {params.dest}/; done > {log} 2>&1"
        " && sed 's#]({params.figdir}/#](#g' {input.summary} > {output.summary}"
