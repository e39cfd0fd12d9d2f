"""blockswap: compress neural networks by block substitution."""

__version__ = "0.1.0"


def load(path):
    """The student of a `blockswap compress` output folder (or a folder holding model.pt, or a checkpoint) as a
    torch module in eval mode whose forward returns the logits alone; preprocess.json beside it says how to
    prepare its inputs. Imported on first call, so that `import blockswap` stays free of torch."""
    from .compress.deploy import load as load_student

    return load_student(path)
