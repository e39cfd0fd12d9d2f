# blockswap: regenerate the BlockSwap / Moonshine evidence.
#   snakemake --cores all                                   (embedded Fashion-MNIST profile, CPU)
#   snakemake --cores all --configfile workflow/config/cifar10.yaml
#   snakemake --workflow-profile workflow/profiles/slurm --configfile workflow/config/cifar10.yaml
# Or compress a network of one's own (a teacher file and an image folder), beside structural pruning:
#   snakemake --cores all --configfile workflow/config/compress.yaml
# and the methods at the same measured latency (workflow/config/latency.yaml).
from snakemake.utils import min_version

from blockswap.workflow.plan import is_compress_profile

min_version("9.0")


include: "rules/profile.smk"


if is_compress_profile(config):

    include: "rules/compress.smk"

    rule all:
        default_target: True
        input:
            rules.compress_table.output,
            rules.compress_results_page.output,

else:

    include: "rules/common.smk"
    include: "rules/structured_common.smk"
    include: "rules/teacher.smk"
    include: "rules/search.smk"
    include: "rules/students.smk"
    include: "rules/ablations.smk"
    include: "rules/detection.smk"
    include: "rules/structured.smk"
    include: "rules/report.smk"

    rule all:
        default_target: True
        input:
            all_outputs(),
            structured_outputs(),
