"""lumu's record checks in native code (lumu_cli/native/src): see lumu_cli/native_events.py."""

from collections.abc import Sequence

REASONS: list[str]  # events.Reason's values, in order: code 1 is REASONS[0]
UNSURE: int  # the code of a record the definition must check

def check(values: Sequence[object]) -> tuple[bytes, bytes, bytes, bytes, bytes] | None: ...
def parse_lines(
    data: bytes, *, unit: str = "auto", naive_utc: bool = True, render: bool = True
) -> tuple[bytes, bytes, bytes] | None: ...
def _panic_inside() -> int | None: ...
