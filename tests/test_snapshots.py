"""Tallies and their records in the state topic: what a commit writes, and what a reader rebuilds.

The writer's tally is checked against a second tally that only reads the records (as another
instance, or a restart, would), and the sets against plain Python sets of the same addresses.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Sequence

import numpy as np
import pytest

from lumu_cli.events import Checked, Reason
from lumu_cli.snapshots import FORMAT, Meta, StateRecord, Tally, decode
from lumu_cli.uniques import V6_PIECE

NOW = "2026-11-28T07:00:00.000Z"
TOPIC = "events"


def checked(
    v4: Sequence[int], v6: Sequence[bytes] = (), invalid: dict[Reason, int] | None = None
) -> Checked:
    result = Checked(v4=np.sort(np.array(v4, np.uint32)), v6=list(v6))
    result.invalid.update(invalid or {})
    return result


def count(tally: Tally, partition: int, first: int, batch: Checked, size: int) -> None:
    """Count `size` records from offset `first` whose valid addresses are in `batch`."""
    tally.apply(partition, range(first, first + size), batch)


def commit(tally: Tally, partitions: list[int]) -> list[tuple[bytes, bytes]]:
    records = tally.changes(TOPIC, partitions, NOW)
    tally.written(partitions, NOW)
    written = [(k, v) for k, v in records if v is not None]
    assert len(written) == len(records)  # no windows here: nothing is ever tombstoned
    return written


def read(records: Sequence[tuple[bytes, bytes | None]], reader: Tally | None = None) -> Tally:
    reader = reader or Tally()
    reader.read(TOPIC, [decode(key, value) for key, value in records])
    return reader


def pieces(records: list[tuple[bytes, bytes]]) -> list[str]:
    return sorted(key.decode().split("/", 2)[2] for key, _ in records)


def random_v6(rng: random.Random, n: int) -> list[bytes]:
    return [rng.getrandbits(128).to_bytes(16, "big") for _ in range(n)]


# ---------------------------------------------------------------- what a commit writes


def test_a_new_partition_is_taken_at_its_start_and_its_first_commit_is_its_meta() -> None:
    tally = Tally()
    assert tally.take(0, 1234) is False  # no snapshot: a new one at the start given
    records = commit(tally, [0])
    assert pieces(records) == ["meta"]
    assert decode(*records[0]) == StateRecord(TOPIC, 0, "meta", Meta(1234, 0, {}, 0, NOW))
    assert commit(tally, [0]) == []  # nothing changed: nothing written


def test_only_the_pieces_that_gained_an_address_are_written_again() -> None:
    tally = Tally()
    tally.take(0, 0)
    first = [0x0A000001, 0x0A000002, 0x0B000001, 0xC0A80101]
    count(tally, 0, 0, checked(first, [bytes(15) + b"\x01"]), 10)
    # pieces are named by the high 14 bits: 10.0/14 -> 0280, 11.0/14 -> 02c0, 192.168/14 -> 302a
    assert pieces(commit(tally, [0])) == ["meta", "v4/0280", "v4/02c0", "v4/302a", "v6/" + "0" * 32]
    count(tally, 0, 10, checked([0x0A000001, 0x0B000001]), 5)  # seen before: no piece changes
    assert pieces(commit(tally, [0])) == ["meta"]  # the offset moved on
    count(tally, 0, 15, checked([0x0A000001, 0x0B0000FF]), 5)  # one new address
    assert pieces(commit(tally, [0])) == ["meta", "v4/02c0"]


def test_pieces_stay_bounded_for_a_dense_ipv4_block_and_many_ipv6_addresses() -> None:
    tally = Tally()
    tally.take(0, 0)
    rng = random.Random(3)
    v6 = random_v6(rng, 3 * V6_PIECE + 100)
    dense = list(range(0x0A000000, 0x0A000000 + (1 << 18), 2))  # a whole piece, half full
    count(tally, 0, 0, checked(dense, v6), 1)
    records = commit(tally, [0])
    (v4_piece,) = [value for key, value in records if b"/v4/" in key]
    assert 4 * 8192 <= len(v4_piece) <= 4 * 8192 + 64  # four full Roaring bitsets, no more
    assert max(len(value) for key, value in records if b"/v6/" in key) <= 16 * V6_PIECE + 5
    assert sum(name.startswith("v6/") for name in pieces(records)) >= 4  # split, not one piece
    more = random_v6(rng, V6_PIECE)  # a second round splits the pieces that overflow again
    count(tally, 0, 1, checked([], more), 1)
    again = commit(tally, [0])
    assert max(len(value) for key, value in again if b"/v6/" in key) <= 16 * V6_PIECE + 5
    reader = read(records + again)
    assert len(reader.ips) == len(dense) + len(set(v6) | set(more))


def v6_sizes(records: list[tuple[bytes, bytes]]) -> dict[str, int]:
    """The IPv6 pieces written, by name: how many addresses each holds."""
    return {
        key.decode().rsplit("/", 1)[1]: (len(value) - 5) // 16
        for key, value in records
        if b"/v6/" in key
    }


def test_ipv6_pieces_hold_4096_addresses_at_most_and_only_those_that_grow_are_written() -> None:
    def address(n: int, low: int = 0) -> bytes:  # most end in zero bytes, which numpy strips
        return (n << 64 | low).to_bytes(16, "big")

    tally, written = Tally(), []
    tally.take(0, 0)
    first = 1
    for batch, expected in [
        (range(1, V6_PIECE), {"0" * 32: V6_PIECE - 1}),
        (range(V6_PIECE, V6_PIECE + 1), {"0" * 32: V6_PIECE}),  # full, not split
        # one more: split in halves, each named by its first address, the rest in a third
        (
            range(V6_PIECE + 1, V6_PIECE + 2),
            {
                "0" * 32: V6_PIECE // 2,
                address(V6_PIECE // 2 + 1).hex(): V6_PIECE // 2,
                address(V6_PIECE + 1).hex(): 1,
            },
        ),
    ]:
        count(tally, 0, first, checked([], [address(n) for n in batch]), 1)
        first += 1
        records = commit(tally, [0])
        assert v6_sizes(records) == expected
        written += records
    middle, last = address(V6_PIECE // 2 + 1), address(V6_PIECE + 1)
    restored = read(written)
    assert restored.take(0, 0) is True
    for writer in (tally, restored):  # the writer, and an instance that restored its snapshot
        seen = [address(3000), address(V6_PIECE + 1)]
        count(writer, 0, first, checked([], seen), 1)
        assert pieces(commit(writer, [0])) == ["meta"]  # nothing new: no piece written
        count(writer, 0, first + 1, checked([], [*seen, address(V6_PIECE + 1, 1)]), 1)
        assert v6_sizes(commit(writer, [0])) == {last.hex(): 2}  # only the last piece grew
        count(writer, 0, first + 2, checked([], [address(V6_PIECE // 2 + 1, 1)]), 1)
        assert v6_sizes(commit(writer, [0])) == {middle.hex(): V6_PIECE // 2 + 1}


def test_a_reader_rebuilds_each_partition_and_the_union_exactly() -> None:
    rng = random.Random(11)
    writer, records = Tally(), []
    expected: dict[int, set[int | bytes]] = {0: set(), 1: set()}
    for partition in (0, 1):
        writer.take(partition, 100)
    for round_ in range(6):
        for partition in (0, 1):
            v4 = [rng.getrandbits(20) for _ in range(300)]  # few containers: many repeats
            v6 = [*random_v6(rng, 50), bytes(16)]  # :: in both partitions
            expected[partition] |= {*v4, *v6}
            first = 100 + 400 * round_
            count(writer, partition, first, checked(v4, v6, {Reason.NOT_JSON: 2}), 400)
        records += commit(writer, [0, 1])
    reader = read(records)
    assert len(reader.ips) == len(expected[0] | expected[1]) == len(writer.ips)
    for partition in (0, 1):
        theirs, mine = reader.partitions[partition], writer.partitions[partition]
        assert len(theirs.ips) == len(expected[partition])
        assert (theirs.next_offset, theirs.messages, theirs.invalid) == (
            mine.next_offset, mine.messages, mine.invalid,
        )  # fmt: skip
    assert reader.check() == []


def test_a_restored_partition_writes_nothing_until_it_changes() -> None:
    writer = Tally()
    writer.take(0, 0)
    rng = random.Random(5)
    count(
        writer, 0, 0, checked([rng.getrandbits(32) for _ in range(2000)], random_v6(rng, 9000)), 50
    )
    restored = read(commit(writer, [0]))
    assert restored.check() == []  # its ~2,000 IPv4 pieces and 3 IPv6 pieces add up to its meta
    assert len(restored.ips) == len(writer.ips)
    assert restored.take(0, 999) is True  # resumes from the snapshot, not from 999
    assert restored.partitions[0].next_offset == 50
    assert commit(restored, [0]) == []
    count(restored, 0, 50, checked([1], [bytes(16)]), 1)  # 0.0.0.1 and ::, in the first pieces
    assert pieces(commit(restored, [0])) == ["meta", "v4/0000", "v6/" + "0" * 32]


def test_a_partition_given_up_and_taken_back_writes_only_the_pieces_that_changed() -> None:
    tally = Tally()
    tally.take(0, 0)
    count(tally, 0, 0, checked([], random_v6(random.Random(7), 3 * V6_PIECE)), 1)
    assert sum(name.startswith("v6/") for name in pieces(commit(tally, [0]))) >= 4
    tally.give(0)  # revoked: followed from now on
    assert tally.take(0, 99) is True  # assigned again: it resumes from its own snapshot
    count(tally, 0, 1, checked([], [bytes(16)]), 1)
    assert pieces(commit(tally, [0])) == ["meta", "v6/" + "0" * 32]


def test_a_partition_whose_pieces_came_without_their_meta_is_counted_afresh() -> None:
    writer = Tally()
    writer.take(0, 0)
    count(writer, 0, 0, checked([1, 2, 3], [bytes(16)]), 4)
    reader = read([(k, v) for k, v in commit(writer, [0]) if not k.endswith(b"/meta")])
    assert reader.take(0, 40) is False  # no snapshot: from the offset given, without those pieces
    assert (len(reader.ips), len(reader.partitions[0].ips), reader.next_offset(0)) == (0, 0, 40)


def test_given_up_partitions_are_followed_and_local_ones_are_not_overwritten() -> None:
    mine, theirs = Tally(), Tally()
    mine.take(0, 0)
    theirs.take(0, 0)
    count(theirs, 0, 0, checked([7, 8, 9]), 3)
    count(mine, 0, 0, checked([1]), 1)
    records = commit(theirs, [0])
    read(records, mine)  # partition 0 is counted here: another's snapshot of it is ignored
    assert len(mine.partitions[0].ips) == 1
    mine.give(0)
    read(records, mine)
    assert len(mine.partitions[0].ips) == 4  # followed now: union of pieces, their meta
    assert mine.partitions[0].next_offset == 3


def test_giving_up_a_partition_not_counted_here_changes_nothing() -> None:
    writer = Tally()
    writer.take(0, 0)
    count(writer, 0, 0, checked([1, 2], [bytes(16)]), 3)
    reader = read(commit(writer, [0]))
    reader.give(0)  # only followed here
    writer.give(0)
    writer.give(0)  # given up already
    for tally in (reader, writer):
        assert (len(tally.ips), tally.next_offset(0), tally.local) == (3, 3, set())
        assert tally.take(0, 99) is True


def test_a_reader_skips_its_own_partitions_and_other_topics_and_reads_on() -> None:
    theirs = Tally()
    for partition in (0, 1):
        theirs.take(partition, 0)
        count(theirs, partition, 0, checked([partition + 1]), 1)
    records = commit(theirs, [0, 1])  # partition 0's records first
    of_another_topic = [(b"other" + k[len(TOPIC) :], v) for k, v in records]
    mine = Tally()
    mine.take(0, 0)  # counted here
    read(of_another_topic + records, mine)
    assert (len(mine.ips), mine.next_offset(0), mine.next_offset(1)) == (1, 0, 1)


def test_a_restart_reads_a_snapshot_its_reset_and_the_snapshot_counted_after_it() -> None:
    """The whole state topic in one read: the tombstones drop what came before them."""
    before, after = Tally(), Tally()
    for tally in (before, after):
        tally.take(1, 0)
    count(before, 1, 0, checked([1, 2, 3], [bytes(16)]), 10)
    count(after, 1, 0, checked([7]), 1)
    old = commit(before, [1])
    reset: list[tuple[bytes, bytes | None]] = [(key, None) for key, _ in old]
    reader = read([*old, *reset, *commit(after, [1])])
    assert (len(reader.ips), len(reader.partitions[1].ips), reader.next_offset(1)) == (1, 1, 1)
    assert reader.check() == []


def test_a_tombstone_drops_the_partition_and_the_union_is_rebuilt_without_it() -> None:
    writer = Tally()
    for partition in (0, 1):
        writer.take(partition, 0)
        count(writer, partition, 0, checked([partition + 1, 100], [bytes([partition]) * 16]), 3)
    records = commit(writer, [0, 1])
    reader = read(records)
    assert len(reader.ips) == 5
    read([(key, None) for key, _ in records if key.startswith(f"{TOPIC}/1/".encode())], reader)
    assert set(reader.partitions) == {0}
    assert len(reader.ips) == 3  # 1, 100 and ::


def test_check_reports_a_partition_whose_pieces_do_not_add_up_to_its_meta() -> None:
    writer = Tally()
    writer.take(2, 0)
    count(writer, 2, 0, checked([1, 2, 1 << 18]), 3)
    records = commit(writer, [2])
    reader = read([(k, v) for k, v in records if not k.endswith(b"v4/0001")])
    assert reader.check() == ["partition 2 holds 2 unique IPs, its meta says 3 (pieces missing?)"]


# ---------------------------------------------------------------- records that are not lumu's


def _head(body: bytes, version: int = FORMAT) -> bytes:
    return b"LUMU" + bytes([version]) + body


GOOD_META = json.dumps(
    {"next_offset": 1, "messages": 1, "invalid": {}, "unique_ips": 0, "written_at": NOW}
).encode()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"x", b"y", r"not a lumu state record \(key b'x'\)"),
        (None, _head(GOOD_META), "not a lumu state record"),
        (b"t/zero/meta", _head(GOOD_META), "not a lumu state record"),
        (b"t/0/meta", b"{}", "not a lumu state record"),
        (b"t/0/meta", b"LUMU", "not a lumu state record"),
        (
            b"t/0/meta",
            _head(GOOD_META, 2),
            r"^written in state format 2; this lumu reads format 1 "
            r"\(use the lumu that wrote it, or --reset to count again\)$",
        ),
        (b"t/0/meta", _head(b"", 2), "written in state format 2"),
        (b"t/0/meta", _head(b""), "bad meta"),
        (b"t/0/meta", _head(b"[]"), "bad meta"),
        (b"t/0/meta", _head(GOOD_META.replace(b'"messages": 1', b'"messages": -1')), "bad meta"),
        (b"t/0/meta", _head(GOOD_META.replace(b"}", b', "x": 1}', 1)[:-1] + b"}"), "bad meta"),
        (b"t/0/v4/00zz", _head(b""), "not a lumu state record"),
        (b"t/0/v4/001", _head(b""), "not a lumu state record"),
        (b"t/0/v4/0X1f", _head(b""), "not a lumu state record"),  # hex, but not as lumu writes it
        (b"t/0/v4/00FF", _head(b""), "not a lumu state record"),
        (b"t/0/v4/0001", _head(b"garbage"), "piece v4/0001: not a Roaring bitmap"),
        (b"t/0/v6/" + b"0" * 32, _head(b"\x01" * 17), "not a whole number of IPv6 addresses"),
        (
            b"t/0/v6/" + b"0" * 32,
            _head(b"\x02" * 16 + b"\x01" * 16),
            "^partition 0 piece v6/0{32}: IPv6 addresses not sorted and distinct$",
        ),
        (b"t/0/v6/" + b"0" * 32, _head(b"\x01" * 32), "not sorted and distinct"),  # twice
        (b"t/0/v6/" + b"0" * 32, _head(b"\x01" * 16 + b"\x03" * 16 + b"\x02" * 16), "not sorted"),
        (
            b"t/0/v6/" + b"f" * 32,
            _head(b"\x01" * 16),
            "^partition 0 piece v6/f{32}: addresses below the piece's lower bound$",
        ),
        (b"t/0/v7/" + b"0" * 32, _head(b""), "not a lumu state record"),
    ],
)
def test_decode_names_what_is_wrong_with_a_record(
    key: bytes | None, value: bytes, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        decode(key, value)


def test_decode_checks_an_ipv4_piece_holds_only_its_own_container() -> None:
    writer = Tally()
    writer.take(0, 0)
    count(writer, 0, 0, checked([(1 << 18) + 5]), 1)
    ((key, value),) = [(k, v) for k, v in commit(writer, [0]) if b"/v4/" in k]
    assert isinstance(decode(key, value), StateRecord)
    with pytest.raises(ValueError, match="addresses outside IPv4 piece 0002"):
        decode(key.replace(b"0001", b"0002"), value)


def test_a_tombstone_decodes_as_none() -> None:
    assert decode(b"t/3/meta", None) == StateRecord("t", 3, "meta", None)


def test_ipv6_addresses_with_trailing_zero_bytes_survive_the_round_trip() -> None:
    zeros = [ipaddress.IPv6Address(text).packed for text in ["::", "2001:db8::", "ff00::"]]
    writer = Tally()
    writer.take(0, 0)
    count(writer, 0, 0, checked([], zeros), 3)
    reader = read(commit(writer, [0]))
    assert len(reader.partitions[0].ips) == 3
    assert all(address in reader.ips for address in zeros)
