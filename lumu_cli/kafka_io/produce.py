"""The producer of `lumu produce`: idempotent, acks=all, deliveries counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Message,
    Producer,
)

from lumu_cli.acls import TOPIC, Acl
from lumu_cli.errors import BrokerError
from lumu_cli.kafka_io.clients import QUIET, _client, _describe


@dataclass
class Sender:
    """An idempotent producer (acks=all) that counts the records sent and the deliveries failed.

    librdkafka reports failed deliveries only (delivery.report.only.error), so no Python code
    runs per delivered record: a record sent is delivered once it has neither failed nor is
    still in librdkafka's queue.

    A refusal that no retry mends (no ACL to write the topic, or a fatal error of the
    idempotent producer) is raised by the next call, and nothing more is sent.
    """

    config: dict[str, str]
    topic: str
    sent: int = 0
    failed: int = 0
    first_error: str | None = None
    stopped: BrokerError | None = None
    _producer: Producer = field(init=False)

    def __post_init__(self) -> None:
        self._producer = _client(
            Producer,
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1 << 20,
                "message.timeout.ms": 30_000,  # a dead broker fails deliveries in 30 s, not 5 min
                "delivery.report.only.error": True,
                "log_level": 0,
                "logger": QUIET,  # the FATAL line of a refusal: it is told as `stopped`
                **self.config,
                "on_delivery": self._report,
            },
        )

    @property
    def delivered(self) -> int:
        """Records sent that have not failed and are no longer queued."""
        return self.sent - self.failed - len(self._producer)

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:  # (a success is reported too if -X turns error-only off)
            self.failed += 1
            self.first_error = self.first_error or error.str()
            if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                self.stopped = self.stopped or Acl("WRITE", TOPIC, self.topic).refused()

    def _serve(self, served: Callable[[float], int], timeout: float) -> int:
        """poll or flush: serves the delivery reports. A fatal error (such as no producer id for
        want of an ACL) is raised from it, as a SystemError over the KafkaException when a
        delivery report comes in the same call: either is told as `stopped`."""
        try:
            return served(timeout)
        except (KafkaException, SystemError) as exc:
            cause = exc if isinstance(exc, KafkaException) else exc.__cause__
            if not isinstance(cause, KafkaException):
                raise
            raise self._stop(cause) from None

    def _stop(self, exc: KafkaException) -> BrokerError:
        """What stops this producer for good: a fatal error, told as a BrokerError."""
        if exc.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED:  # no producer id:
            self.stopped = Acl("WRITE", TOPIC, self.topic).refused()  # WRITE on a topic gives one
        else:
            self.stopped = BrokerError(f"the producer stopped: {_describe(exc)}")
        return self.stopped

    def _check(self) -> None:
        if self.stopped is not None:
            raise self.stopped

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Queue records (key, value); waits for room when librdkafka's queue is full."""
        self._check()
        produce, topic = self._producer.produce, self.topic
        try:
            for key, value in records:
                try:
                    produce(topic, value, key)
                except BufferError:
                    self._send_when_room(key, value)
        except KafkaException as exc:  # fatal: a producer in that state takes nothing more
            raise self._stop(exc) from None
        self.sent += len(records)
        self._serve(self._producer.poll, 0)
        self._check()

    def _send_when_room(self, key: bytes, value: bytes) -> None:
        """Serve delivery reports until librdkafka's queue takes the record."""
        while True:
            self._serve(self._producer.poll, 0.05)
            self._check()
            try:
                self._producer.produce(self.topic, value, key)
                return
            except BufferError:
                continue

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, then serve the delivery reports that came meanwhile.

        A sleep, not a poll(seconds): that returns early each time records go out, and so would
        wake a paced run twice as often.
        """
        time.sleep(seconds)
        self._serve(self._producer.poll, 0)
        self._check()

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for deliveries; the number still undelivered."""
        left = self._serve(self._producer.flush, timeout)
        self._check()
        return left
