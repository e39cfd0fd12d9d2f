"""Datasets and their batches: the built-in sets, image folders, the processes of data-parallel training, stand-ins
written in the real formats for rehearsals.
"""
