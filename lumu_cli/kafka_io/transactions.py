"""The state topic's clients: a transactional producer whose commits carry the group's
offsets (`Transactions`, `Pending`), and a read_committed reader (`StateReader`)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    OffsetSpec,
)

from lumu_cli.acls import GROUP, TOPIC, TRANSACTIONAL_ID, Acl, not_visible, transactional_prefix
from lumu_cli.errors import BrokerError, NotAuthorized, StateError
from lumu_cli.kafka_io.clients import QUIET, _admin, _asked_again, _client, _describe
from lumu_cli.kafka_io.consume import Consumed


class CommitFailed(Exception):
    """A state transaction did not commit (aborted); its records and offsets are not stored.

    `refused`: the group coordinator refused the offsets because this member is no longer in the
    group's current generation (KIP-447): a zombie, whose partitions others own now.
    """

    def __init__(self, why: str, *, refused: bool = False) -> None:
        super().__init__(why)
        self.refused = refused


# The group coordinator's answers to the offsets of a member it has fenced. Not
# REBALANCE_IN_PROGRESS: through a cooperative rebalance the member may keep its partitions.
FENCED = frozenset(
    {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID}
)


TXN_SECONDS = 5.0  # librdkafka's timeout for each step of a state transaction
WEDGED_SECONDS = 4 * TXN_SECONDS  # how long the consume loop waits for a whole one, at most


class Pending:
    """A state transaction under way in a thread of its own (`Transactions.begin`).

    Its outcome is waited for at most WEDGED_SECONDS from its start: when the group coordinator
    moves (a broker restarts), librdkafka's send_offsets_to_transaction can ignore its own
    timeout (librdkafka#5456). Such a producer is abandoned, and the next commit starts a new one
    with the same transactional.id, which fences whatever the old one left open.
    """

    def __init__(self, owner: Transactions, producer: Producer) -> None:
        self.owner = owner
        self.producer = producer
        self.started = time.monotonic()
        self.outcome: list[tuple[KafkaException | NotAuthorized | None, bool]] = []
        self.worker: threading.Thread | None = None

    def done(self) -> bool:
        """Whether `result` would answer at once: finished, or given up on."""
        return bool(self.outcome) or time.monotonic() - self.started >= WEDGED_SECONDS

    def result(self, wait: float | None = None) -> None:
        """Wait for the outcome (at most `wait` s, and no later than WEDGED_SECONDS from the
        start); CommitFailed unless it committed, NotAuthorized if an ACL is missing. One not
        over by then is abandoned."""
        if self.worker is not None:
            left = self.started + WEDGED_SECONDS - time.monotonic()
            self.worker.join(max(0.0, left if wait is None else min(wait, left)))
        if not self.outcome:
            self.owner.abandoned += 1
            self.owner._drop(self.producer)
            waited = time.monotonic() - self.started
            raise CommitFailed(f"no answer within {waited:.1f} s; starting afresh")
        error, usable = self.outcome[0]
        if not usable:
            self.owner._drop(self.producer)
        if isinstance(error, NotAuthorized):
            raise error
        if error is not None:
            raise CommitFailed(_describe(error), refused=error.args[0].code() in FENCED)


class Transactions:
    """A transactional producer of state records, each commit with the group's offsets.

    The offsets go in with the consumer's group metadata (KIP-447): a member that has lost its
    partitions (a zombie) has an old generation, the group coordinator refuses its offsets and the
    whole transaction is aborted, so its snapshot never becomes visible.
    """

    def __init__(
        self,
        config: dict[str, str],
        topic: str,
        group: str,
        timeout: float,
        hook: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.hook = hook  # told "mid-commit" once a transaction is written, before its commit
        self._may = Acl("WRITE", TRANSACTIONAL_ID, transactional_prefix(group), prefixed=True)
        self.transactional_id = f"{transactional_prefix(group)}{uuid.uuid4().hex[:12]}"
        self._config = {
            "transactional.id": self.transactional_id,
            # a killed instance's open transaction holds readers back this long, at most
            "transaction.timeout.ms": 10_000,
            "linger.ms": 5,
            "log_level": 0,
            # An abandoned producer is fenced by its successor, and librdkafka logs that as
            # FATAL, which log_level 0 still prints: lumu tells its commits' failures itself.
            "logger": QUIET,
            **config,
        }
        self._producer: Producer | None = None
        self.abandoned = 0  # producers left in a transaction that did not answer in time
        first = _client(
            Producer, self._config
        )  # a setting librdkafka refuses is told now, not in a thread
        # init_transactions takes about half a second: started now, it overlaps the group join
        self._early = threading.Thread(target=self._start_early, args=(first,), daemon=True)
        self._early.start()

    def _start_early(self, producer: Producer) -> None:
        with contextlib.suppress(BrokerError):  # the first commit tries again, and says why
            self._producer = self._start(producer)

    def _start(self, producer: Producer | None = None) -> Producer:
        producer = producer or _client(Producer, self._config)
        try:
            # librdkafka's first look for the transaction coordinator can find no broker up
            # yet, and it looks again only 500 ms later. A metadata request first (of all
            # topics: one of a single topic did not help, when measured) avoids that.
            producer.list_topics(timeout=self.timeout)
            producer.init_transactions(self.timeout)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
                raise self._may.refused(name=self.transactional_id) from None
            raise BrokerError(f"cannot start state transactions: {_describe(exc)}") from None
        return producer

    @staticmethod
    def _why_abortable(producer: Producer, exc: KafkaException) -> KafkaException:
        """The error that made the transaction abortable, when `exc` is only what a later call
        met: a refused record makes send_offsets_to_transaction fail with "Erroneous state" if
        it comes first. librdkafka keeps the first error, and any commit of a transaction in
        that state fails at once with it (nothing is sent)."""
        if not exc.args[0].txn_requires_abort():
            return exc
        try:
            producer.commit_transaction(0)
        except KafkaException as first:
            return first
        return exc  # (not reached: a transaction that requires abort does not commit)

    def _refusal(self, error: KafkaError, group: str | None) -> NotAuthorized | None:
        """What an authorization error in a transaction says is missing (None: another error).

        The only topic a transaction can be refused is the state topic, which it adds to itself
        to write (the offsets of the topic counted need READ on it, which counting has already).
        """
        code = error.code()
        if code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            return self._may.refused(name=self.transactional_id)
        if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return Acl("WRITE", TOPIC, self.topic).refused()
        if code == KafkaError.GROUP_AUTHORIZATION_FAILED and group is not None:
            return Acl("READ", GROUP, group).refused()
        return None

    def commit(
        self,
        records: Sequence[tuple[bytes, bytes | None]],
        offsets: dict[int, int],
        source: Consumed | None,
    ) -> None:
        """Write `records` and commit `offsets` for `source`'s group, all or nothing, and wait.

        CommitFailed if it did not commit: nothing of it is visible, and the next try starts
        afresh.
        """
        self.begin(records, offsets, source).result()

    def begin(
        self,
        records: Sequence[tuple[bytes, bytes | None]],
        offsets: dict[int, int],
        source: Consumed | None,
    ) -> Pending:
        """Start the transaction of `commit` in a thread of its own; its outcome comes later.

        CommitFailed at once if it cannot start (no member of the group now, no producer);
        NotAuthorized if the principal may not use its transactional.id.
        """
        positions, group = [], None
        if source is not None and offsets:
            positions = [TopicPartition(source.topic, p, o) for p, o in sorted(offsets.items())]
            group = source.group_metadata()
            # librdkafka forgets its member id when its session times out; the coordinator takes
            # offsets without a member (as from producers before KIP-447) without checking them
            if not source.member_id():
                raise CommitFailed(f"not a member of group {source.group!r} now", refused=True)
        self._early.join()
        try:
            producer = self._producer = self._producer or self._start()
        except NotAuthorized:
            raise
        except BrokerError as exc:
            raise CommitFailed(str(exc)) from None
        pending, group_id = Pending(self, producer), source.group if source else None
        worker = threading.Thread(
            target=lambda: pending.outcome.append(
                self._transact(producer, records, positions, group, group_id)
            ),
            name="lumu-state-commit",
            daemon=True,  # a wedged one must not hold the process at exit
        )
        pending.worker = worker
        worker.start()
        return pending

    def _drop(self, producer: Producer) -> None:
        """Use a new producer next time (the same transactional.id: it fences this one)."""
        if self._producer is producer:
            self._producer = None

    def _transact(
        self,
        producer: Producer,
        records: Sequence[tuple[bytes, bytes | None]],
        positions: list[TopicPartition],
        group: object,
        group_id: str | None = None,
    ) -> tuple[KafkaException | NotAuthorized | None, bool]:
        """One transaction: (None or its error, whether the producer can be used again)."""
        try:
            producer.begin_transaction()
            for key, value in records:
                while True:
                    try:
                        producer.produce(self.topic, value, key, partition=0)
                        break
                    except BufferError:
                        producer.poll(0.05)
            if group is not None:
                producer.send_offsets_to_transaction(positions, group, TXN_SECONDS)
            if self.hook is not None:
                producer.flush(TXN_SECONDS)
                self.hook("mid-commit")
            producer.commit_transaction(TXN_SECONDS)
            return None, True
        except KafkaException as exc:
            error: KafkaException | NotAuthorized = (
                self._refusal(exc.args[0], group_id)
                or self._refusal(self._why_abortable(producer, exc).args[0], group_id)
                or exc
            )
            if not exc.args[0].fatal():
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(TXN_SECONDS)
                    return error, True
            with contextlib.suppress(KafkaException):  # dropped without waiting for its queue
                producer.purge()
            return error, False

    def close(self) -> None:
        self._early.join()
        if self._producer is not None:
            with contextlib.suppress(KafkaException):
                self._producer.flush(TXN_SECONDS)


StateRow = tuple[int, bytes | None, bytes | None]  # offset, key, value


# Errors that waiting will not mend (others, such as a leader moving, librdkafka retries itself)
_PERMANENT = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}
)


class StateReader:
    """Reads the state topic from its start, read_committed: whole transactions only.

    Its consumer is in `group` (librdkafka needs a group.id) but never joins it nor commits:
    it only finds the group's coordinator, for which the principal needs DESCRIBE on the group,
    which `group_grant` (READ for track and serve) includes.
    """

    BATCH = 10_000

    def __init__(
        self,
        config: dict[str, str],
        topic: str,
        group: str,
        timeout: float,
        group_grant: str = "DESCRIBE",
    ) -> None:
        self.topic = topic
        self._refusals = {
            KafkaError.TOPIC_AUTHORIZATION_FAILED: Acl("READ", TOPIC, topic).refused(),
            KafkaError.GROUP_AUTHORIZATION_FAILED: Acl(group_grant, GROUP, group).refused(
                "DESCRIBE"
            ),
        }
        self._consumer = _client(
            Consumer,
            {
                "group.id": group,  # never joined, never committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                "log_level": 0,
                **config,
            },
        )
        self._admin = _admin(config)
        self.partitions = self._partitions(timeout)
        self._at: dict[int, int] = {}  # partition -> the offset read up to
        self.rewind()

    def _partitions(self, timeout: float) -> list[int]:
        """The topic's partitions, once its metadata has reached the broker (just created?)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                metadata = self._consumer.list_topics(self.topic, timeout=timeout).topics
                found = metadata[self.topic]
                if found.error is not None and found.error.code() in self._refusals:
                    raise not_visible(Acl("READ", TOPIC, self.topic))
                why = found.error.str() if found.error is not None else ""
            except KafkaException as exc:
                why = _describe(exc)
            if not why and found.partitions:
                return sorted(found.partitions)
            if time.monotonic() > deadline:
                raise StateError(
                    f"cannot read state topic {self.topic!r}: {why or 'no partitions'}"
                )
            time.sleep(0.1)

    def rewind(self) -> None:
        """Read again from the start."""
        start = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions]
        self._consumer.assign(start)
        self._at = {}

    def read(self, timeout: float) -> list[StateRow]:
        """The committed records there are (up to BATCH): (offset, key, value), in order.

        StateError on an error that waiting will not mend; NotAuthorized if that is an ACL."""
        try:
            messages = self._consumer.consume(self.BATCH, timeout)
        except KafkaException as exc:
            raise StateError(f"reading state topic {self.topic!r}: {_describe(exc)}") from None
        records = []
        for message in messages:
            error, partition, offset = message.error(), message.partition(), message.offset()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                assert partition is not None
                assert offset is not None
                if error is None:
                    records.append((offset, message.key(), message.value()))
                    offset += 1
                self._at[partition] = offset  # at EOF: past transaction markers, to the end
            elif refused := self._refusals.get(error.code()):
                raise refused
            elif error.fatal():
                raise StateError(f"reading state topic {self.topic!r}: {error.str()}")
        return records

    def to_end(self, timeout: float, seconds: float) -> Iterator[list[StateRow]]:
        """Batches of records up to where the topic ends now; StateError after `seconds`.

        The end is the high watermark, past any transaction still open (a read_committed
        consumer sees only the stable end): reaching it waits for such a transaction to commit
        or abort, so a snapshot being committed as a partition changes hands is never missed.
        """
        ends = self._ends(timeout)
        deadline = time.monotonic() + seconds
        while not all(self._at.get(p, -1) >= end or end == 0 for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise StateError(
                    f"state topic {self.topic!r} could not be read to its end within "
                    f"{seconds:g} s (a transaction left open?)"
                )
            yield self.read(0.1)

    def _ends(self, timeout: float) -> dict[int, int]:
        """Each partition's end, past open transactions. A topic just created (on a cluster)
        may have no leader in the admin client's metadata yet ("No leaders found"), which
        librdkafka does not refresh for it: it is asked for again, with fresh metadata, until
        `timeout`."""
        wanted = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in self.partitions}  # type: ignore[no-untyped-call]
        tries = 0

        def ask() -> dict[int, int]:
            nonlocal tries
            if tries:
                self._admin.list_topics(self.topic, timeout=timeout)
            tries += 1
            asked = self._admin.list_offsets(
                wanted, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=timeout
            )
            return {tp.partition: f.result(timeout=timeout).offset for tp, f in asked.items()}

        try:
            return _asked_again(
                ask, lambda code: code not in _PERMANENT, time.monotonic() + timeout
            )
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise not_visible(Acl("READ", TOPIC, self.topic)) from None
            why = f"cannot reach state topic {self.topic!r}: {_describe(exc)}"
            raise StateError(why) from None

    def close(self) -> None:
        self._consumer.close()
