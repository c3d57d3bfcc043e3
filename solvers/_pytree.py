"""Frozen dataclasses registered as JAX pytrees (static fields marked with ``static_field``)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

T = TypeVar("T")


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the pytree's structure (hashed, never traced)."""
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Makes ``cls`` a frozen dataclass whose non-static fields are pytree leaves.

    Fields made with :func:`static_field` are metadata (Python values such as step counts or names):
    changing them retraces a jitted function. All other fields are traced, so they can be learned
    (for example a step size) or batched with ``vmap``.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
