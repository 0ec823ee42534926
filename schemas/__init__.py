"""Contracts between the stages of the pipeline (pydantic v2).

Nothing here imports torch, duckdb or any stage, so every stage can depend on it.
"""

from schemas.errors import SyphusError

__all__ = ["SyphusError"]
