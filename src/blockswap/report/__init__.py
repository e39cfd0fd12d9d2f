"""`blockswap report <name>`: the papers' tables and figures from run metrics, the paper's numbers beside ours.

One module per report, each a `build(runs, profile, **options) -> Report` registered in `REPORTS` (with its
CLI options in an `add_arguments` beside it); adding a report is one new module imported here:
  results      Table 2/3: table main; figures pareto_params, pareto_ops (error vs params / vs Ops or MACs)
  correlation  Table 1: table proxy_correlation (Spearman ρ, Kendall τ of each proxy with trained error);
               figure <proxy>_vs_error (scatter, one panel per budget)
  density      Figure 2: table and figure density (random nets' errors, single-blocktype nets marked)
  samples      §4.3: table and figure samples (error of the top-ranked candidate vs the number of samples)
  claims       the papers' claims: table claims (the paper's evidence, ours with a 95% interval, a verdict)
  proxy_zoo    every proxy's ρ/τ with trained accuracy, P@10%, best-of-N pick, seconds; a combined ranker
               chosen on half the nets, evaluated on the other half; figure proxy_zoo
  detection    Table 4: table detection (COCO box and mask AP per backbone, from `detect train` metrics)
The rest: runs (metrics files → `Run`), stats, tables (Markdown/LaTeX/CSV), figures (style, saving),
base (`Report`, the registry, output files). Errors are top-1 test error in percent; std is the sample
std (ddof=1), NaN for a single run. Tables are written as .csv/.md/.tex, figures as .png/.pdf(/.svg).
"""

from . import claims, correlation, density, detection, results, samples, zoo  # noqa: F401 - each module registers its report
from .base import PROFILES, REPORTS, Outputs, Report, ReportKind, check_profile, plan_outputs, run

__all__ = ["PROFILES", "REPORTS", "Outputs", "Report", "ReportKind", "check_profile", "plan_outputs", "run"]
