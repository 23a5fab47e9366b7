"""The behaviour of nngrpc.StatusCode; its members are generated.

The members (names, numbers, descriptions) come from the one table of status
codes, include/nngrpc/status_table.h, through gen_status.py, into _status_table.py.
This module holds what every member can do, so the generated file is data.
"""

from __future__ import annotations

import enum
from typing import Dict, Tuple, TypeVar

_S = TypeVar("_S", bound="StatusCodeBase")

# Per enum class: number -> member. Filled on first use; the enums are
# immutable, so a race only builds the same dict twice.
_BY_INT: Dict[type, Dict[int, "StatusCodeBase"]] = {}


class StatusCodeBase(enum.Enum):
    """Base of StatusCode: members are (number, description) tuples."""

    value: Tuple[int, str]

    @property
    def value_int(self) -> int:
        """The numeric code on the wire (gRPC's numbering)."""
        return self.value[0]

    @property
    def description(self) -> str:
        """The lower-case description from the status table."""
        return self.value[1]

    @classmethod
    def from_int(cls: type[_S], number: int) -> _S:
        """Returns the member with this number; UNKNOWN for any other."""
        table = _BY_INT.get(cls)
        if table is None:
            table = {m.value[0]: m for m in cls}
            _BY_INT[cls] = table
        member = table.get(number)
        if member is None:
            return cls["UNKNOWN"]
        return member  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "<%s.%s: %d>" % (type(self).__name__, self.name, self.value[0])
