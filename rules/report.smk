# Stage 5: tables (CSV, Markdown, LaTeX) and figures (PNG, PDF), with the papers' numbers beside ours.
# Each rule names its files: --table the table's files, --figure NAME the files of each of the report's figures.


rule report_results:
    input:
        student_metrics,
    output:
        table=table_outputs("main", "main.rst", "Results"),
        figure=figure_outputs("pareto_params", "pareto.rst", "Results"),
        figure_ops=figure_outputs("pareto_ops", "pareto.rst", "Results"),
    log:
        f"{LOGS}/report/results.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        paper=config["paper"],
    shell:
        "blockswap report results --metrics {input} --paper {params.paper} --table {output.table}"
        " --figure pareto_params {output.figure} --figure pareto_ops {output.figure_ops} > {log} 2>&1"


rule report_correlation:
    input:
        scores=lambda w: list(correlation_scores().values()),
        metrics=random_net_metrics,
    output:
        table=table_outputs("proxy_correlation", "correlation.rst", "Ablations"),
        figure=figure_outputs("fisher_vs_error", "correlation.rst", "Ablations"),
    log:
        f"{LOGS}/report/correlation.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        scores=lambda w: " ".join(
            f"--scores {k}:{v}" for k, v in correlation_scores().items()
        ),
        paper=config["paper"],
    shell:
        "blockswap report correlation {params.scores} --metrics {input.metrics} --paper {params.paper}"
        " --table {output.table} --figure fisher_vs_error {output.figure} > {log} 2>&1"


rule report_proxy_zoo:
    input:
        scores=rules.report_correlation.input.scores,
        metrics=random_net_metrics,
    output:
        table=table_outputs("proxy_zoo", "proxy_zoo.rst", "Ablations"),
        figure=figure_outputs("proxy_zoo", "proxy_zoo.rst", "Ablations"),
    log:
        f"{LOGS}/report/proxy_zoo.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        scores=rules.report_correlation.params.scores,
        paper=config["paper"],
    shell:
        "blockswap report proxy_zoo {params.scores} --metrics {input.metrics} --paper {params.paper}"
        " --table {output.table} --figure proxy_zoo {output.figure} > {log} 2>&1"


rule report_density:
    input:
        unpack(density_metrics),
    output:
        table=table_outputs("density", "density.rst", "Ablations"),
        figure=figure_outputs("density", "density.rst", "Ablations"),
    log:
        f"{LOGS}/report/density.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        paper=config["paper"],
    shell:
        "blockswap report density --metrics {input} --paper {params.paper} --table {output.table}"
        " --figure density {output.figure} > {log} 2>&1"


rule report_samples:
    input:
        sample_count_metrics,
    output:
        table=table_outputs("samples", "samples.rst", "Ablations"),
        figure=figure_outputs("samples", "samples.rst", "Ablations"),
    log:
        f"{LOGS}/report/samples.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        paper=config["paper"],
        samples=SEARCH["samples"],
    shell:
        "blockswap report samples --metrics {input} --full-search {params.samples} --paper {params.paper}"
        " --table {output.table} --figure samples {output.figure} > {log} 2>&1"


rule report_claims:
    """The papers' claims tested on every run of the profile, with 95% intervals: the report's first table."""
    input:
        scores=lambda w: list(correlation_scores().values()),
        metrics=claims_metrics,
    output:
        table=table_outputs("claims", "claims.rst", "Claims"),
    log:
        f"{LOGS}/report/claims.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        scores=rules.report_correlation.params.scores,
        paper=config["paper"],
    shell:
        "blockswap report claims {params.scores} --metrics {input.metrics} --paper {params.paper}"
        " --table {output.table} > {log} 2>&1"


rule results_page:
    """RESULTS.md: the report's tables and figures with the run's commit, machine, threads and time, read from
    the run's own files (`blockswap results-page`); written last, after every other target.
    """
    input:
        lambda w: report_outputs() + structured_outputs(),
    output:
        f"{R}/RESULTS.md",
    log:
        f"{LOGS}/report/results_page.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        results=lambda w, output: output[0].rsplit("/", 1)[0],  # the folder RESULTS.md sums up
        profile=config["name"],
    shell:
        "blockswap results-page {params.results} --profile {params.profile} -o {output} > {log} 2>&1"
