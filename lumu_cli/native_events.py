"""The record checks in native code (lumu_cli/native: Rust, PyO3), joined to their definition.

`check_events` gives what `events.check_events` gives for the same records. The native checker
reads a whole batch in one pass without the GIL, and answers only for records it is certain of:
the usual ones (a JSON object without escapes, a dotted quad or an IPv6 address std reads, a
timestamp of the shapes `tsstream` reads as arrays) and the plain invalid ones (empty, not UTF-8,
a field missing or of the wrong JSON type). Every other record is checked by the definition,
events.py, and so is a whole batch if the checker fails (a panic in it is caught and told once).

Without the extension (lumu installed where no Rust was), or with LUMU_NATIVE=0, every record is
checked by the definition; `WHY_PYTHON` says why, and `track` and `serve` say it once on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from lumu_cli import events
from lumu_cli.events import Checked, Reason

__all__ = ["WHY_PYTHON", "check_events", "native", "parse_lines"]


def _load() -> tuple[ModuleType | None, str | None]:
    """The extension, or None and why records are checked in Python."""
    if os.environ.get("LUMU_NATIVE", "1") == "0":
        return None, "LUMU_NATIVE=0"
    try:
        import lumu_native
    except ImportError:
        return None, "the native checker is not installed (make install builds it, with cargo)"
    if list(lumu_native.REASONS) != [str(reason) for reason in Reason]:
        return None, "the native checker is from another lumu version (make install rebuilds it)"
    return lumu_native, None


native, WHY_PYTHON = _load()  # tests set `native` to None to check the definition alone
_REASONS = list(Reason)
_failed_once = False


def check_events(values: Sequence[bytes | None], *, times: bool = False) -> Checked:
    """`events.check_events(values, times=times)`, the certain records checked natively."""
    if native is None:
        return events.check_events(values, times=times)
    found = native.check(values)
    if found is None:
        _tell_failure()
        return events.check_events(values, times=times)
    reasons_raw, v4, v4_millis, v6, v6_millis = found
    reasons = np.frombuffer(reasons_raw, np.uint8)
    unsure = np.flatnonzero(reasons == native.UNSURE)
    out = _by_definition(values, unsure, times) if len(unsure) else Checked()
    counts = np.bincount(reasons, minlength=len(_REASONS) + 1)
    for code in (np.flatnonzero(counts[1 : len(_REASONS) + 1]) + 1).tolist():
        out._invalid(_REASONS[code - 1], int(np.argmax(reasons == code)), int(counts[code]))
    addresses = np.frombuffer(v4, np.uint32)
    millis = np.frombuffer(v4_millis, np.int64) if times else None
    if len(out.v4):
        out._add_v4(addresses, millis)
    else:  # sorted by the checker already
        out.v4 = addresses
        if millis is not None:
            out.v4_millis = millis
    out.v6 += [v6[at : at + 16] for at in range(0, len(v6), 16)]
    if times:
        out.v6_millis += np.frombuffer(v6_millis, np.int64).tolist()
    return out


def parse_lines(
    data: bytes, *, unit: str, naive_utc: bool, render: bool
) -> tuple[bytes, bytes, bytes] | None:
    """The lines of `data` that the common timestamp shapes surely read, as tsstream's arrays
    read them: (ok, rendered, millis) as bytes (see lumu_native.parse_lines); None without the
    native checker, or if it failed."""
    if native is None:
        return None
    found: tuple[bytes, bytes, bytes] | None = native.parse_lines(
        data, unit=unit, naive_utc=naive_utc, render=render
    )
    if found is None:
        _tell_failure()
    return found


def _by_definition(
    values: Sequence[bytes | None], rows: np.ndarray[tuple[int], np.dtype[np.intp]], times: bool
) -> Checked:
    """The records at `rows`, checked by the definition; examples are indices into `values`."""
    indices = rows.tolist()
    checked = events.check_events([values[row] for row in indices], times=times)
    checked.examples = {reason: indices[at] for reason, at in checked.examples.items()}
    return checked


def _tell_failure() -> None:
    global _failed_once
    if not _failed_once:
        _failed_once = True
        print(
            "lumu: the native checker failed on a batch (a bug): it was checked in Python, "
            "as is any other batch it fails on",
            file=sys.stderr,
        )
