"""The Kafka ACLs each lumu command needs, and the line that names the one a refusal lacks.

One table for three readers: the README's ACL section shows it (a test keeps them equal),
the ACL integration test grants exactly it, and every authorization refusal lumu reports
names the entry of it to grant. It also names what lumu creates in Kafka: the state topic of
a group and the prefix of its transactional ids.

Kafka's authorizer lets READ, WRITE, DELETE and ALTER imply DESCRIBE (and ALTER_CONFIGS imply
DESCRIBE_CONFIGS), so no entry here is a DESCRIBE that another already gives: each one is
needed, which the integration test checks by taking each away.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumu_cli.errors import NotAuthorized

TOPIC, GROUP, TRANSACTIONAL_ID = "topic", "group", "transactional-id"


def state_topic(group: str) -> str:
    """The compacted topic that holds `group`'s state."""
    return f"{group}-lumu-state"


def transactional_prefix(group: str) -> str:
    """What every transactional.id of `group`'s state producers starts with (one per run)."""
    return f"lumu-{group}-"


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: an operation on a resource, by its literal name or a name prefix."""

    operation: str  # as Kafka names it: READ, WRITE, CREATE, DELETE, DESCRIBE, DESCRIBE_CONFIGS
    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str
    prefixed: bool = False
    why: str = ""

    def __str__(self) -> str:
        kind = self.resource.replace("-", " ")
        where = f"{kind}s prefixed {self.name!r}" if self.prefixed else f"{kind} {self.name!r}"
        return f"{self.operation} on {where}"

    def kafka_acls(self) -> str:
        """This rule as the arguments of Kafka's kafka-acls.sh --add (after the principal)."""
        operation = "".join(word.capitalize() for word in self.operation.split("_"))
        pattern = " --resource-pattern-type prefixed" if self.prefixed else ""
        return f"--operation {operation} --{self.resource} {self.name}{pattern}"

    def confluent(self) -> str:
        """This rule as the arguments of `confluent kafka acl create --allow` (after the
        principal)."""
        kind = {GROUP: "consumer-group"}.get(self.resource, self.resource)
        operation = self.operation.lower().replace("_", "-")
        prefix = " --prefix" if self.prefixed else ""
        return f"--operations {operation} --{kind} {self.name}{prefix}"

    def refused(self, operation: str | None = None, name: str | None = None) -> NotAuthorized:
        """The broker refused `operation` (this rule's, or one it implies, such as DESCRIBE) on
        this resource, or on `name`, one of those the prefix covers: this rule grants it."""
        kind = self.resource.replace("-", " ")
        return NotAuthorized(
            f"not authorized to {operation or self.operation} {kind} {name or self.name!r} "
            f"(grant {self})"
        )


def produce(topic: str, *, create: bool = True) -> list[Acl]:
    """`lumu produce`: write the topic (an idempotent producer needs no more), and create it."""
    acls = [Acl("WRITE", TOPIC, topic, why="send the records (also lets it see the topic)")]
    if create:
        acls.append(Acl("CREATE", TOPIC, topic, why="create the topic, if it does not exist"))
    return acls


def track(topic: str, group: str, *, state: bool = True) -> list[Acl]:
    """`lumu track` and `lumu serve`: read the topic in the group; keep the group's state."""
    acls = [
        Acl("READ", TOPIC, topic, why="read the records"),
        Acl("READ", GROUP, group, why="join the group, commit its offsets"),
    ]
    if state:
        name = state_topic(group)
        acls += [
            Acl("READ", TOPIC, name, why="restore the count, follow other instances"),
            Acl("WRITE", TOPIC, name, why="save the count"),
            Acl("CREATE", TOPIC, name, why="create the state topic, if it does not exist"),
            Acl("DESCRIBE_CONFIGS", TOPIC, name, why="check that it is compacted"),
            Acl(
                "WRITE",
                TRANSACTIONAL_ID,
                transactional_prefix(group),
                prefixed=True,
                why="commit the count and the offsets together",
            ),
        ]
    return acls


def reset(topic: str, group: str) -> list[Acl]:
    """`lumu track --reset` (or serve): what track needs, and the deletion of the group."""
    return [*track(topic, group), Acl("DELETE", GROUP, group, why="delete its offsets")]


def saved(group: str) -> list[Acl]:
    """`lumu state`: read the group's state topic and check it."""
    name = state_topic(group)
    return [
        Acl("READ", TOPIC, name, why="read the saved count"),
        Acl("DESCRIBE_CONFIGS", TOPIC, name, why="show how it is kept"),
        Acl("DESCRIBE", GROUP, group, why="find its coordinator (its reader never joins)"),
    ]


def not_visible(grant: Acl) -> NotAuthorized:
    """A topic the principal may not DESCRIBE: Kafka does not say whether it exists."""
    return NotAuthorized(
        f"topic {grant.name!r} does not exist or is not visible to this principal (DESCRIBE on "
        f"topic {grant.name!r}; grant {grant}, which includes it)"
    )
