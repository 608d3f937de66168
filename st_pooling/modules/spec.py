"""The one configuration vocabulary: a pooling by its registered name and its typed options.

``PoolingSpec`` is what ``compare --poolings``, ``train --pooling``, ``sweep`` candidates, ``tune`` heads and
recipes name a pooling with; its options are checked and typed once, by
:func:`st_pooling.modules.options.checked_options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from st_pooling.modules.base import BaseNeeds
from st_pooling.modules.options import checked_options
from st_pooling.modules.registry import pooling_class


@dataclass(frozen=True)
class PoolingSpec:
    """A pooling configuration to compare: a registered name and its constructor options."""

    pooling: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if not self.options:
            return self.pooling
        return f"{self.pooling}({','.join(f'{k}={v}' for k, v in sorted(self.options.items()))})"

    def base_needs(self) -> BaseNeeds:
        """The base settings this pooling needs (see :meth:`PoolingModule.base_needs_for`)."""
        return pooling_class(self.pooling).base_needs_for(self.options)

    @classmethod
    def parse(cls, text: str) -> PoolingSpec:
        """``"gem"``, ``"gem:initial_p=2,negatives=clamp"``, ``"mltp:layers=1,3,5,layer_summary=mean"`` (a part
        without ``=`` continues the list before it) or ``"mltp:layers=4+5+6"``; values are checked and typed by
        :func:`st_pooling.modules.options.checked_options`."""
        name, _, rest = text.strip().partition(":")
        raw: dict[str, str] = {}
        key = None
        for item in filter(None, (part.strip() for part in rest.split(","))):
            name_part, sep, value = item.partition("=")
            if sep and name_part.strip():
                key = name_part.strip()
                raw[key] = value.strip()
            elif not sep and key is not None and raw[key] and item.lstrip("-").isdigit():
                raw[key] += "," + item  # layers=1,3,5
            else:
                raise ValueError(f"pooling option {item!r} in {text!r} is not of the form key=value")
        return cls(name, checked_options(pooling_class(name), raw, f"pooling spec {text!r}"))
