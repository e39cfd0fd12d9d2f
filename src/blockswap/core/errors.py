"""The one exception type for mistakes a user can make (config, genotype, data path, checkpoint), and the one for
a command a stop signal ended with its work kept. Torch-free: the command line imports both before any work."""


class BlockswapError(Exception):
    """A user-caused error. The CLI prints its message on one line and exits with status 2."""


class Stopped(Exception):
    """A stop signal ended the command where nothing is lost; the CLI prints the message as one line and exits
    with `exit_status`, 128 + the signal, as a shell reports a process the signal ended (SLURM requeues on it)."""

    def __init__(self, signum: int, message: str):
        self.signum, self.exit_status = signum, 128 + signum
        super().__init__(message)
