"""Scoring untrained networks: Fisher potential and the zero-cost proxies.
"""
