"""The exact unique-IP set: checked against a plain Python set of the same addresses.

IPv4 addresses are 32-bit integers and IPv6 addresses their 16 packed bytes, drawn at random or
made with `ipaddress`; the reference is `set()`, so every expected count is computed here.
"""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumu_cli.uniques import Pieces, UniqueIPs

MERGE_THRESHOLD = 1 << 16  # pending IPv6 addresses are merged into the sorted array from here

# Addresses whose packed form ends in zero bytes: numpy's S16 strips trailing NULs when it reads.
TRAILING_ZEROS = [
    ipaddress.IPv6Address(text).packed
    for text in ["::", "2001:db8::", "2001:db8:1::", "1::", "ff00::", "::100", "2001:db8::1:0"]
]


def random_v4(rng: random.Random, count: int) -> list[int]:
    return [rng.getrandbits(32) for _ in range(count)]


def random_v6(rng: random.Random, count: int) -> list[bytes]:
    return [rng.getrandbits(128).to_bytes(16, "big") for _ in range(count)]


def v6_members(ips: UniqueIPs) -> set[bytes]:
    """The IPv6 addresses as full 16-byte values, read from the array's raw bytes."""
    raw = ips.v6.tobytes()
    return {raw[i : i + 16] for i in range(0, len(raw), 16)}


def assert_same(ips: UniqueIPs, v4: set[int], v6: set[bytes], absent: list[int | bytes]) -> None:
    assert len(ips) == len(v4) + len(v6)
    assert all(address in ips for address in v4)
    assert all(address in ips for address in v6)
    members = v4 | v6
    assert not any(address in ips for address in absent if address not in members)


def test_an_empty_set() -> None:
    ips = UniqueIPs()
    assert len(ips) == 0
    assert 0 not in ips
    assert bytes(16) not in ips


@pytest.mark.parametrize(("v4_count", "v6_count"), [(1, 0), (0, 1), (1000, 1000), (20_000, 5000)])
def test_counts_exactly_against_a_python_set(v4_count: int, v6_count: int) -> None:
    rng = random.Random(v4_count * 31 + v6_count)
    v4 = random_v4(rng, v4_count)
    v6 = random_v6(rng, v6_count)
    v4 += v4[: v4_count // 3]  # repeats
    v6 += v6[: v6_count // 3]
    rng.shuffle(v4)
    rng.shuffle(v6)
    ips = UniqueIPs()
    for start in range(0, max(len(v4), len(v6)), 777):  # in uneven batches
        ips.add_v4(v4[start : start + 777])
        ips.add_v6(v6[start : start + 777])
    absent: list[int | bytes] = [*random_v4(rng, 200), *random_v6(rng, 200)]
    assert_same(ips, set(v4), set(v6), absent)
    assert v6_members(ips) == set(v6)


def test_crossing_the_merge_threshold_keeps_every_address() -> None:
    rng = random.Random(65536)
    v6 = random_v6(rng, MERGE_THRESHOLD + 5000) + TRAILING_ZEROS
    distinct = set(v6)
    ips = UniqueIPs()
    ips.add_v6(v6[:40_000])
    ips.add_v6(v6[30_000:])  # overlaps the first batch, and crosses the threshold
    ips.add_v6(v6[:1000])  # repeats, pending again after the merge
    ips.add_v4(random_v4(rng, 10))
    absent: list[int | bytes] = list(random_v6(rng, 500))
    assert len(ips) == len(distinct) + 10
    assert v6_members(ips) == distinct
    assert all(address in ips for address in [*rng.sample(v6, 2000), *TRAILING_ZEROS])
    assert not any(address in ips for address in absent if address not in distinct)


def test_addresses_ending_in_zero_bytes_are_members_before_and_after_merging() -> None:
    ips = UniqueIPs()
    ips.add_v6(TRAILING_ZEROS)
    assert all(address in ips for address in TRAILING_ZEROS)  # while pending
    ips.add_v6(random_v6(random.Random(1), MERGE_THRESHOLD))  # forces a merge
    assert all(address in ips for address in TRAILING_ZEROS)
    assert len(ips) == MERGE_THRESHOLD + len(TRAILING_ZEROS)
    assert v6_members(ips) >= set(TRAILING_ZEROS)


def test_an_address_is_not_confused_with_its_zero_padded_prefix() -> None:
    one = ipaddress.IPv6Address("2001:db8::1").packed
    zero = ipaddress.IPv6Address("2001:db8::").packed
    ips = UniqueIPs()
    ips.add_v6([one] * 3)
    ips.add_v6(random_v6(random.Random(2), MERGE_THRESHOLD))
    assert one in ips
    assert zero not in ips
    ips.add_v6([zero])
    assert zero in ips


def test_ipv4_and_ipv6_are_separate_spaces() -> None:
    ips = UniqueIPs()
    ips.add_v4([1])
    ips.add_v6([ipaddress.IPv6Address("::1").packed])
    assert len(ips) == 2
    assert 1 in ips
    assert 2 not in ips
    assert ipaddress.IPv6Address("::2").packed not in ips


def test_update_is_a_union() -> None:
    rng = random.Random(3)
    v4a, v4b = random_v4(rng, 3000), random_v4(rng, 3000)
    v6a, v6b = random_v6(rng, 3000), random_v6(rng, 3000)
    v4b += v4a[:1000]  # overlap
    # Shared addresses ending in a zero byte have their own test below; here only `b` has them.
    v6b += [address for address in v6a[:1000] if address[-1]] + TRAILING_ZEROS
    a, b = UniqueIPs(), UniqueIPs()
    a.add_v4(v4a)
    a.add_v6(v6a)
    b.add_v4(v4b)
    b.add_v6(v6b)
    a.update(b)
    assert_same(a, set(v4a) | set(v4b), set(v6a) | set(v6b), [])
    assert_same(b, set(v4b), set(v6b), v4a[1000:] + v6a[1000:])  # the other set is unchanged
    a.update(b)  # again: nothing new
    assert len(a) == len(set(v4a) | set(v4b)) + len(set(v6a) | set(v6b))


@pytest.mark.parametrize("text", ["2001:db8::100", "2001:db8::", "::"])
def test_update_counts_a_shared_address_ending_in_zero_bytes_once(text: str) -> None:
    address = ipaddress.IPv6Address(text).packed
    a, b = UniqueIPs(), UniqueIPs()
    a.add_v6([address])
    b.add_v6([address])
    a.update(b)
    assert len(a) == 1


def test_update_into_an_empty_set_copies_it() -> None:
    rng = random.Random(4)
    v4, v6 = random_v4(rng, 500), random_v6(rng, 500) + TRAILING_ZEROS
    source = UniqueIPs()
    source.add_v4(v4)
    source.add_v6(v6)
    copy = UniqueIPs()
    copy.update(source)
    assert_same(copy, set(v4), set(v6), [])
    assert v6_members(copy) == set(v6)


def test_the_union_of_many_sets_holds_every_address_of_each() -> None:
    """As a partition's tombstone leaves it: the union rebuilt from the others, IPv6 included."""
    rng = random.Random(5)
    sets, v4, v6 = [], set(), set()
    for _ in range(40):  # more than one round of unions, 16 bitmaps at a time
        ips = UniqueIPs()
        addresses4, addresses6 = random_v4(rng, 50), random_v6(rng, 50) + TRAILING_ZEROS[:2]
        ips.add_v4(addresses4)
        ips.add_v6(addresses6)
        sets.append(ips)
        v4 |= set(addresses4)
        v6 |= set(addresses6)
    assert_same(UniqueIPs.union(sets), v4, v6, random_v4(rng, 100) + random_v6(rng, 100))


# ---------------------------------------------------------------- Pieces: what a snapshot writes


def _grow(ips: UniqueIPs, pieces: Pieces, v4: list[int], v6: list[bytes]) -> None:
    ips.add_v4(v4)
    ips.add_v6(v6)
    pieces.touch(v4, v6)


def test_pieces_grown_while_a_snapshot_is_stored_are_due_in_the_next() -> None:
    ips = UniqueIPs()
    pieces = Pieces(ips)
    v6 = [ipaddress.IPv6Address(f"2001:db8::{n:x}").packed for n in range(3)]
    _grow(ips, pieces, [1, 2 << 18], v6[:1])
    assert [name for name, _ in pieces.changed()] == ["v4/0000", "v4/0002", f"v6/{'0' * 32}"]
    _grow(ips, pieces, [3], v6[1:2])  # while those are being stored
    pieces.written()
    assert [name for name, _ in pieces.changed()] == ["v4/0000", f"v6/{'0' * 32}"]
    pieces.written()
    assert pieces.changed() == []


def test_pieces_are_touched_only_by_additions_since_the_last_read() -> None:
    ips = UniqueIPs()
    pieces = Pieces(ips)
    assert not pieces.touched()
    _grow(ips, pieces, [1, 2 << 18], [])
    assert pieces.touched()
    pieces.changed()
    assert not pieces.touched()  # read: a commit with nothing new has nothing to do
    pieces.written()
    assert not pieces.touched()


def test_pieces_of_a_snapshot_not_stored_are_due_again_with_those_grown_since() -> None:
    ips = UniqueIPs()
    pieces = Pieces(ips)
    _grow(ips, pieces, [1, 2 << 18], [])
    pieces.changed()
    _grow(ips, pieces, [4 << 18], [])
    pieces.unwritten()
    assert [name for name, _ in pieces.changed()] == ["v4/0000", "v4/0002", "v4/0004"]
    pieces.written()
    _grow(ips, pieces, [1], [])  # already there: no piece changed
    assert pieces.changed() == []


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 2**32 - 1), max_size=3000).map(
            lambda xs: np.array(sorted(xs), np.uint32)
        ),
        max_size=12,
    ),
    st.integers(0, 12),
)
def test_a_buffered_set_holds_what_an_unbuffered_one_does_whenever_it_is_read(
    batches: list[npt.NDArray[np.uint32]], read_at: int
) -> None:
    from lumu_cli.uniques import V4_BUFFER

    buffered, plain = UniqueIPs(buffered=True), UniqueIPs()
    for n, batch in enumerate(batches):
        buffered.add_v4(batch)
        plain.add_v4(batch)
        if n == read_at:  # a read in between empties the buffer into the bitmap
            assert len(buffered) == len(plain)
    assert buffered._v4_waiting_count < V4_BUFFER  # never more held back than that
    assert list(buffered.v4) == list(plain.v4)
    pieces = Pieces(buffered)  # what a commit reads sees every address
    assert pieces.ips.v4 == plain.v4


def test_a_buffered_set_loses_nothing_when_another_thread_reads_it_meanwhile() -> None:
    """A window's union is added to by the consume loop and read by the HTTP server's thread:
    reading empties the buffers, and no address added meanwhile may be lost."""
    import threading

    rng = np.random.default_rng(7)
    v4 = [np.sort(rng.integers(0, 2**32, 300, dtype=np.uint32)) for _ in range(400)]
    v6 = [[bytes(rng.integers(0, 256, 16, dtype=np.uint8)) for _ in range(20)] for _ in range(400)]
    shared, done = UniqueIPs(buffered=True), threading.Event()
    sizes: list[int] = []

    def read() -> None:
        while not done.is_set():
            sizes.append(len(shared))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for addresses, packed in zip(v4, v6, strict=True):
            shared.add_v4(addresses)
            shared.add_v6(packed)
    finally:
        done.set()
        reader.join(30)
    expected = set(np.concatenate(v4).tolist()) | {p for batch in v6 for p in batch}
    assert len(shared) == len(expected)
    assert sizes == sorted(sizes)  # it only ever grew, as the reader saw it
