"""The worker layer: pools of threads that claim jobs from the store and run them.

A package of its own (not a namespace package), so that the layer contract in pyproject.toml
can name it.
"""
