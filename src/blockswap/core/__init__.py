"""The torch-free core: registries, errors, atomic files and provenance, training settings, block types and
architectures as arithmetic, genotypes, analytic counts, sampling, score files, data locations, the papers' numbers.
"""
