"""Compressing a user's network (`blockswap compress`): the job and its checks, the teacher, the search or the
pruning, the deployable student, the model card and the comparison table.
"""
