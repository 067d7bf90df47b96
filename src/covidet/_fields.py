"""Checking a JSON object's keys against a dataclass's fields (metadata files read at load)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

__all__ = ["field_mismatch"]


def field_mismatch(cls: Any, keys: Iterable[str]) -> str | None:
    """None when ``keys`` are the fields of dataclass ``cls`` (those with defaults may be left
    out); else a message naming the missing and unknown ones and what was expected."""
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    given = set(keys)
    missing, unknown = required - given, given - names
    if not (missing or unknown):
        return None
    return f"missing fields {sorted(missing)}, unknown fields {sorted(unknown)}; expected {sorted(names)}"
