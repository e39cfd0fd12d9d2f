"""Networks and what is measured on them without data: blocks, structured layers, models from genotypes, hook
counts, latency tables.
"""
