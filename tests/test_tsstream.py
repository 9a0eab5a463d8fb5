"""The block reader and the vectorized fast path of `lumu ts parse -`."""

from __future__ import annotations

import io

import pytest

from lumu_cli import tsstream
from lumu_cli.timestamps import Unit, load_zone
from lumu_cli.tsstream import BLOCK_BYTES, MAX_LINE, parse_block, parse_stream, read_blocks

COMMON_SHAPES = {
    "2021-12-03T16:15:30.235Z": "2021-12-03T16:15:30.235Z",
    "2021-12-03 16:15:30": "2021-12-03T16:15:30.000Z",
    "2021-12-03t16:15:30,5z": "2021-12-03T16:15:30.500Z",
    "2021-12-03T16:15:30.123456789+05:30": "2021-12-03T10:45:30.123Z",
    "2021-12-03T16:15:30-0800": "2021-12-04T00:15:30.000Z",
    "2021-12-03T16:15:30.1-03": "2021-12-03T19:15:30.100Z",
    "2020-02-29T23:59:59.999-00:00": "2020-02-29T23:59:59.999Z",
    "0001-01-01T00:00:00Z": "0001-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59.999Z": "9999-12-31T23:59:59.999Z",
    "1969-12-31T23:59:59.999Z": "1969-12-31T23:59:59.999Z",
}


class _Endless(io.RawIOBase):
    """`count` copies of `line`, produced on demand, so a huge input never sits in memory."""

    def __init__(self, line: bytes, count: int) -> None:
        self.line, self.left = line, count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        copies = min(self.left, len(buffer) // len(self.line))
        chunk = self.line * copies
        buffer[: len(chunk)] = chunk
        self.left -= copies
        return len(chunk)


def test_common_shapes_are_parsed_without_the_general_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: object, **__: object) -> str:
        raise AssertionError("the fast path fell back to the general parser")

    monkeypatch.setattr(tsstream, "normalize", refuse)
    block = parse_block("".join(f"{line}\n" for line in COMMON_SHAPES).encode())
    assert [block.result(row) for row in range(len(block))] == list(COMMON_SHAPES.values())


def test_fast_path_rejects_what_the_definition_rejects() -> None:
    lines = [
        "2021-02-29T00:00:00Z",
        "2021-04-31T00:00:00",
        "2021-00-10T00:00:00",
        "2021-12-03T24:00:00",  # valid ISO (next midnight), but only the general parser knows it
        "2021-12-03T16:60:00",
        "2021-12-03T16:15:60",
        "2021-12-03T16:15:30+24:00",
        "2021-12-03T16:15:30+05:60",
        "0000-12-03T16:15:30Z",
        "0001-01-01T00:00:00+00:01",
        "2021+12+03T16:15:30Z",
    ]
    block = parse_block("".join(f"{line}\n" for line in lines).encode())
    assert [block.result(row) for row in range(len(block))] == [None] * 3 + [
        "2021-12-04T00:00:00.000Z"
    ] + [None] * 7
    assert sorted(block.errors) == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert "day is out of range for month" in str(block.errors[0])


def test_naive_lines_follow_tz_and_units_follow_unit() -> None:
    block = parse_block(
        b"2021-07-01 12:00:00\n1700000000\n", unit=Unit.MS, tz=load_zone("Europe/Madrid")
    )
    assert block.output(0, len(block)) == b"2021-07-01T10:00:00.000Z\n1970-01-20T16:13:20.000Z\n"


def test_crlf_blank_lines_and_a_missing_final_newline() -> None:
    blocks = list(parse_stream(io.BytesIO(b"1\r\n\r\n2")))
    assert b"".join(block.output(0, len(block)) for block in blocks) == (
        b"1970-01-01T00:00:01.000Z\n1970-01-01T00:00:02.000Z\n"
    )
    errors = {
        block.first_line + row: e.reason for block in blocks for row, e in block.errors.items()
    }
    assert errors == {2: "empty input"}


def test_a_long_stream_is_read_in_bounded_blocks_and_every_line_counted() -> None:
    line, count = b"2021-12-03T16:15:30.235Z\n", 300_000  # 7.5 MB, several blocks
    stream = io.BufferedReader(_Endless(line, count), buffer_size=BLOCK_BYTES)
    seen = 0
    for block in parse_stream(stream):
        assert len(block.data) <= BLOCK_BYTES + MAX_LINE
        assert block.first_line == seen + 1
        assert block.ok.all()
        seen += len(block)
    assert seen == count


def test_an_endless_line_is_cut_and_reported_and_the_next_line_still_parsed() -> None:
    data = b"1\n" + b"x" * (5 * BLOCK_BYTES) + b"\n2\n"
    blocks = list(read_blocks(io.BufferedReader(io.BytesIO(data))))
    assert max(len(block) for block in blocks) <= BLOCK_BYTES + MAX_LINE + 1
    results = [
        (block.first_line + row, block.result(row), block.errors.get(row))
        for block in parse_stream(io.BufferedReader(io.BytesIO(data)))
        for row in range(len(block))
    ]
    assert [(number, output) for number, output, _ in results] == [
        (1, "1970-01-01T00:00:01.000Z"),
        (2, None),
        (3, "1970-01-01T00:00:02.000Z"),
    ]
    assert "not a recognized timestamp" in str(results[1][2])
