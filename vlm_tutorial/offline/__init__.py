"""The CPU stand-in for machines without a GPU: a transformers reference engine, tiny models, toy pictures.

Nothing in the core package imports this at module level; the settings reach it
only when no GPU engine can run.

Example:
    >>> from vlm_tutorial.offline import ReferenceEngine  # doctest: +SKIP
"""

from .reference import ReferenceEngine

__all__ = ["ReferenceEngine"]
