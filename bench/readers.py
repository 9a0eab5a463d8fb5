"""Plain confluent-kafka readers, the baselines of bench/consume.py and bench/startup.py.

Each runs as a process of its own, as `lumu track` does, so that the wall time of both holds the
same things: Python's start-up, the imports, the consumer, the group join, reading every
partition to its end and leaving the group. Only what each reader needs is imported.

    python bench/readers.py KIND BOOTSTRAP TOPIC GROUP SETTINGS

KIND is one of:
  bare   `consume(BATCH, WAIT)` batches, records counted, nothing decoded;
  seed   the original exercise's loop: `poll(1.0)` one record at a time, `json.loads(value)`,
         `device_ip` added to a Python set, any exception caught and counted;
  floor  `consume(BATCH, WAIT)` batches, each value decoded by msgspec into its two fields (as
         lumu decodes them), the raw `device_ip` added to a set: nothing checked, nothing kept.
  follow `consume(BATCH, 0.1)` batches, records counted, the count printed ten times a second
         until SIGTERM, never stopping at the end (bench/cluster.py: a live reader).

SETTINGS is a JSON object of librdkafka properties (bench/consume.py passes lumu's own, taken
from lumu_cli.kafka_io). Every reader subscribes to TOPIC in GROUP from the earliest offset,
with partition ends told, and stops by the rule of `lumu track --exit-at-end`: once every
assigned partition has reached its end (partition EOF; the topic is not written meanwhile, so
an end once told stays the end). BATCH and WAIT are the batch size and the wait of
`track --exit-at-end` (lumu_cli.tracker; consume.py checks that they still are).

It prints one JSON line: messages, distinct (the size of the set, or null), exceptions (the seed
loop's), first_record_at and elapsed (seconds from creating the consumer to the first record,
and to the end), and reading (seconds from the first record to the end).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

BATCH = 20_000  # lumu_cli.tracker.BATCH
WAIT = 0.01  # lumu_cli.tracker.END_POLL_SECONDS: the last, short batch is not waited for
SEED_WAIT = 1.0  # the seed's poll(1.0); it returns with the first record there is
TIMEOUT = 300.0  # a reader that has not reached the end by then has failed


class Reader:
    """A consumer in a fresh group that tells when every assigned partition is at its end."""

    def __init__(self, bootstrap: str, topic: str, group: str, settings: dict[str, object]):
        self.assigned: set[int] = set()
        self.at_end: set[int] = set()
        self.began = time.perf_counter()
        self.first: float | None = None
        self.consumer = Consumer(
            {
                **settings,
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        self.consumer.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke)
        self.deadline = time.monotonic() + TIMEOUT

    def _assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.update(tp.partition for tp in partitions)  # the binding assigns them

    def _revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.difference_update(tp.partition for tp in partitions)

    def finished(self) -> bool:
        """Whether every assigned partition has told its end."""
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"did not reach the end within {TIMEOUT:g} s")
        return bool(self.assigned) and self.assigned <= self.at_end

    def end_of(self, message: Message) -> None:
        """A message that is not a record: a partition's end is noted, any other error raised."""
        error = message.error()
        assert error is not None
        if error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)
        self.at_end.add(message.partition())  # type: ignore[arg-type]

    def batch(self, messages: list[Message]) -> list[Message]:
        """The records of a batch: partition ends are noted, any other error raised. Checked
        with map over the C methods, as lumu does, so a batch of records costs no Python loop."""
        records = messages
        if any(map(Message.error, messages)):
            records = []
            for message in messages:
                if message.error() is None:
                    records.append(message)
                else:
                    self.end_of(message)
        if records and self.first is None:
            self.first = time.perf_counter()
        return records

    def summary(self, messages: int, distinct: int | None, exceptions: int = 0) -> str:
        end = time.perf_counter()
        first = None if self.first is None else self.first - self.began
        self.consumer.close()
        return json.dumps(
            {
                "messages": messages,
                "distinct": distinct,
                "exceptions": exceptions,
                "first_record_at": first,
                "elapsed": end - self.began,
                "reading": None if self.first is None else end - self.first,
            }
        )


def bare(reader: Reader) -> str:
    """Batches, records counted, nothing decoded."""
    consume, count = reader.consumer.consume, 0
    while not reader.finished():
        count += len(reader.batch(consume(BATCH, WAIT)))
    return reader.summary(count, None)


def seed(reader: Reader) -> str:
    """The original exercise's loop: one record a poll, json.loads, device_ip into a set. The
    end is looked for only when a poll brings none or a partition's end, as a loop that counts
    and nothing more would."""
    poll, count, failed = reader.consumer.poll, 0, 0
    ips: set[object] = set()
    done = False
    while not done:
        message = poll(SEED_WAIT)
        if message is None:
            done = reader.finished()
            continue
        if message.error() is not None:
            reader.end_of(message)
            done = reader.finished()
            continue
        if not count:
            reader.first = time.perf_counter()
        count += 1
        try:
            ips.add(json.loads(message.value())["device_ip"])  # type: ignore[arg-type]
        except Exception:
            failed += 1
    return reader.summary(count, len(ips), failed)


def floor(reader: Reader) -> str:
    """Batches, each value decoded by msgspec into its two fields, device_ip into a set."""
    import msgspec

    class Fields(msgspec.Struct, gc=False):
        device_ip: object = None
        timestamp: object = None

    decode, consume = msgspec.json.Decoder(Fields).decode, reader.consumer.consume
    ips: set[object] = set()
    count = 0
    while not reader.finished():
        records = reader.batch(consume(BATCH, WAIT))
        count += len(records)
        for value in map(Message.value, records):
            try:  # noqa: SIM105  (a `with suppress` per record would slow the floor)
                ips.add(decode(value).device_ip)  # type: ignore[arg-type]
            except (msgspec.DecodeError, TypeError):
                pass
    return reader.summary(count, len(ips))


def follow(reader: Reader) -> str:
    """Batches, records counted, the running count printed every FOLLOW_SECONDS, until SIGTERM
    (a live reader: bench/cluster.py's baseline of how long a count stands still)."""
    import signal

    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    consume, count, printed = reader.consumer.consume, 0, 0.0
    while not stopped:
        count += len(reader.batch(consume(BATCH, FOLLOW_WAIT)))
        if time.monotonic() - printed >= FOLLOW_SECONDS:
            print(count, flush=True)
            printed = time.monotonic()
    return reader.summary(count, None)


FOLLOW_WAIT = 0.1  # lumu_cli.tracker.POLL_SECONDS: the wait of a reader that does not stop
FOLLOW_SECONDS = 0.1

KINDS: dict[str, Callable[[Reader], str]] = {
    "bare": bare, "seed": seed, "floor": floor, "follow": follow,
}  # fmt: skip


def main() -> None:
    kind, bootstrap, topic, group, settings = sys.argv[1:]
    print(KINDS[kind](Reader(bootstrap, topic, group, json.loads(settings))))


if __name__ == "__main__":
    main()
