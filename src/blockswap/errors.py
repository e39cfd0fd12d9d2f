"""The one exception type for mistakes a user can make (config, genotype, data path, checkpoint)."""


class BlockswapError(Exception):
    """A user-caused error. The CLI prints its message on one line and exits with status 2."""
