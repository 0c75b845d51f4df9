"""JSON round trips shared by the typed run configs (``GroundConfig``, ``TrainConfig``).

A config is a dataclass saved as ``config.json`` in its run folder. Loading refuses unknown keys
(a typo must not be silently ignored) and fills keys that older configs lack from ``LEGACY``,
the values those runs were made with, so old run folders keep loading as they were trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = ["JsonConfig"]

C = TypeVar("C", bound="JsonConfig")


class JsonConfig:
    """Mixin for config dataclasses: ``to_dict``, ``save``, ``from_dict``, ``load``."""

    KIND: ClassVar[str] = "config"
    """Named in errors: "unknown {KIND} option(s): ..."."""
    LEGACY: ClassVar[dict[str, Any]] = {}
    """Values for keys missing from older saved configs (what those runs used)."""

    def validate(self: C) -> C:
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown {cls.KIND} option(s): {', '.join(sorted(unknown))}")
        return cls(**{**cls.LEGACY, **d}).validate()

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(json.loads(Path(path).read_text()))
