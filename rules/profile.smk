# A profile's validation, shared by the paper workflow (common.smk) and the compress profile (compress.smk).
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def _refuse(message):
    """A profile mistake: one line on stderr and exit status 2 before any job, as the CLI does."""
    print(f"blockswap workflow: invalid configuration: {message}", file=sys.stderr)
    sys.exit(2)


def validate_profile(schema):
    """The config against `schema`, which fills in its defaults; a mistake is one line naming the key."""
    try:
        validate(config, schema)
    except WorkflowError as e:
        why = e.__context__  # the jsonschema ValidationError
        if not hasattr(why, "json_path"):
            raise
        _refuse(f"{why.json_path.lstrip('$.') or 'top level'}: {why.message}")
