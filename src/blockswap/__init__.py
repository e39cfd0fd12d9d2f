"""blockswap: compress neural networks by block substitution."""

__version__ = "0.1.0"
