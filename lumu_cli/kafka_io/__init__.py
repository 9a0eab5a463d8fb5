"""The only package that imports confluent_kafka: client config, topic admin, producer, consumer,
and the state topic's clients.

Everything librdkafka reports is turned into lumu's own values here: a `BrokerError` with one
line to say, a `Polled` batch of record values grouped by partition, plain numbers for offsets.

    clients       -b, -F and -X settings; the making of clients; what a refusal says
    admin         topics (exists, created, layout, the state topic's check), groups, end offsets
    produce       Sender, the producer of `lumu produce`
    consume       Consumed, the group member of `track` and `serve`; Polled, PartitionInfo
    transactions  Transactions and Pending (state commits with the offsets), StateReader
"""

from confluent_kafka import OFFSET_BEGINNING

from lumu_cli.kafka_io.admin import (
    STATE_TOPIC_CONFIG,
    Ends,
    TopicLayout,
    check_state_topic,
    delete_group,
    describe_topic,
    ensure_state_topic,
    ensure_topic,
    group_members,
    topic_exists,
)
from lumu_cli.kafka_io.clients import DEFAULT_BOOTSTRAP, client_config, read_properties
from lumu_cli.kafka_io.consume import Consumed, PartitionInfo, Polled, Rebalance
from lumu_cli.kafka_io.produce import Sender
from lumu_cli.kafka_io.transactions import (
    FENCED,
    TXN_SECONDS,
    WEDGED_SECONDS,
    CommitFailed,
    Pending,
    StateReader,
    StateRow,
    Transactions,
)

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "FENCED",
    "OFFSET_BEGINNING",
    "STATE_TOPIC_CONFIG",
    "TXN_SECONDS",
    "WEDGED_SECONDS",
    "CommitFailed",
    "Consumed",
    "Ends",
    "PartitionInfo",
    "Pending",
    "Polled",
    "Rebalance",
    "Sender",
    "StateReader",
    "StateRow",
    "TopicLayout",
    "Transactions",
    "check_state_topic",
    "client_config",
    "delete_group",
    "describe_topic",
    "ensure_state_topic",
    "ensure_topic",
    "group_members",
    "read_properties",
    "topic_exists",
]
