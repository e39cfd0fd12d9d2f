"""Training: the step and the epoch loop, losses, checkpoints, runs that stop and resume, pretrained weights.
"""
