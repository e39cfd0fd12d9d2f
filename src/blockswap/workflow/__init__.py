"""What a workflow profile asks for, decided without torch: the plans of the paper profiles and of detection, and
rehearsals.
"""
