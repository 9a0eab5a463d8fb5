"""lumu: toolkit for device event streams. The library API; the CLI lives in `lumu_cli.cli`."""

from lumu_cli.errors import ExitCode, InvalidTimestamp, LumuError, UsageError
from lumu_cli.timestamps import Unit, format_timestamp, load_zone, normalize, parse_timestamp

__version__ = "0.1.0"

__all__ = [
    "ExitCode",
    "InvalidTimestamp",
    "LumuError",
    "Unit",
    "UsageError",
    "format_timestamp",
    "load_zone",
    "normalize",
    "parse_timestamp",
]
