# A profile's validation, shared by the paper workflow (common.smk) and the compress profile (compress.smk).
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from blockswap.core.errors import BlockswapError

# JSON schema types a string of a --config value may stand for.
_SCALARS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _refuse(message):
    """A profile mistake: one line on stderr and exit status 2 before any job, as the CLI does."""
    print(f"blockswap workflow: invalid configuration: {message}", file=sys.stderr)
    sys.exit(2)


def _check(check):
    """`check(config)`'s value, a BlockswapError from it refused as a profile mistake."""
    try:
        return check(config)
    except BlockswapError as e:
        _refuse(e)


def _retyped(why) -> bool:
    """Snakemake reads a nested --config value with YAML's BaseLoader, every leaf a string (`--config
    compress='{seeds: [0, 1]}'` gives '0'): where the schema wants a number, boolean or null (of its type, or
    of one of its anyOf's) and YAML reads the string as one, put that in its place. True if it did.
    """
    if (
        why.validator not in ("type", "anyOf")
        or not isinstance(why.instance, str)
        or not why.absolute_path
    ):
        return False
    types = (
        [branch.get("type") for branch in why.validator_value]
        if why.validator == "anyOf"
        else [why.validator_value]
    )
    wanted = [t for ts in types for t in (ts if isinstance(ts, list) else [ts])]
    try:
        value = yaml.safe_load(why.instance)
    except yaml.YAMLError:
        return False
    if not any(_SCALARS.get(t, lambda v: False)(value) for t in wanted):
        return False
    *parents, leaf = why.absolute_path
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value
    return True


CONDA_ENV = "../envs/blockswap.yaml"  # for --sdm conda: the same pins as pyproject.toml


def validate_profile(schema):
    """The config against `schema`, which fills in its defaults; a mistake is one line naming the key. Then the
    profile's folders, which every .smk file uses: R (results), LOGS and BENCH (a log and a benchmark per job).
    """
    global R, LOGS, BENCH
    while True:
        try:
            validate(config, schema)
            break
        except WorkflowError as e:
            why = e.__context__  # the jsonschema ValidationError
            if not hasattr(why, "json_path"):
                raise
            if not _retyped(why):
                _refuse(f"{why.json_path.lstrip('$.') or 'top level'}: {why.message}")
    R = config["results_dir"] or f"results/{config['name']}"
    LOGS, BENCH = f"{R}/logs", f"{R}/benchmarks"


def run_files(stem):
    """A training job's files from one path stem (wildcards in single braces): `output`, its checkpoint
    and metrics under results_dir (unpack it with ** into the job's output), `log` and `benchmark`.
    """
    return SimpleNamespace(
        output={
            "checkpoint": f"{R}/{stem}/model.pt",
            "metrics": f"{R}/{stem}/metrics.json",
        },
        log=f"{LOGS}/{stem}.log",
        benchmark=f"{BENCH}/{stem}.tsv",
    )


def job_shell_prefix():
    """Jobs call `blockswap` from the environment running Snakemake (e.g. .venv/bin), with no activation
    needed (with --sdm conda the job's own environment comes first on PATH); a rehearsal's jobs mark their
    tables and figures (blockswap.report.figures reads BLOCKSWAP_REHEARSAL)."""
    rehearsal = "export BLOCKSWAP_REHEARSAL=1; " if config.get("rehearsal") else ""
    shell.prefix(f'export PATH="{Path(sys.executable).parent}:$PATH"; {rehearsal}')
