"""A least-privilege principal: lumu on a broker whose StandardAuthorizer lets its user do only
what ACLs grant.

The broker is `scripts/kafka-broker start --sasl --acl`: its SCRAM user is a plain user, and
only the plain listener's ANONYMOUS is a super user, through which this test grants and revokes
ACLs with its own admin client and reads the reference count. For each command, the ACLs of
lumu_cli/acls.py (the README's table) are granted all but one, each in turn: the command must be
refused in one line, exit 3, naming the one missing. With all of them it must work, and its
count must equal the independent reference count. So each ACL listed is needed, and together
they suffice.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from lumu_cli import acls
from lumu_cli.acls import Acl
from tests.integration.helpers import (
    LUMU,
    Secured,
    count_when,
    running,
    secured_broker,
    summary,
)
from tests.integration.reference import reference

PORT = 29250  # plain 29250, controller 29251, SASL_SSL 29252: apart from the other brokers
USER, PASSWORD = "lumu-acl", "pw-acl-not-for-eyes"
PRINCIPAL = f"User:{USER}"
TIMEOUT = 5  # lumu's --timeout: every refusal must come within it
RECORDS = 1500

_RESOURCES = {
    acls.TOPIC: ResourceType.TOPIC,
    acls.GROUP: ResourceType.GROUP,
    acls.TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}


class Grants:
    """The ACLs of the test user, set through the super user's listener."""

    def __init__(self, plain: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": plain, "log_level": 0})

    def only(self, rules: list[Acl]) -> None:
        """Revoke every ACL of the user, grant `rules`, and wait until the broker has them."""
        everything = AclBindingFilter(  # None: any name, any host
            ResourceType.ANY, None, ResourcePatternType.ANY, PRINCIPAL, None,  # type: ignore[arg-type]
            AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        for future in self.admin.delete_acls([everything]).values():
            future.result(timeout=30)
        bindings = [self._binding(rule) for rule in rules]
        if bindings:
            for future in self.admin.create_acls(bindings).values():
                future.result(timeout=30)
        deadline = time.monotonic() + 30
        while len(self.admin.describe_acls(everything).result(timeout=30)) != len(bindings):
            assert time.monotonic() < deadline, "the broker did not take the ACLs"
            time.sleep(0.1)

    @staticmethod
    def _binding(rule: Acl) -> AclBinding:
        pattern = ResourcePatternType.PREFIXED if rule.prefixed else ResourcePatternType.LITERAL
        return AclBinding(
            _RESOURCES[rule.resource], rule.name, pattern, PRINCIPAL, "*",
            AclOperation[rule.operation], AclPermissionType.ALLOW,
        )  # fmt: skip


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    with secured_broker(PORT, USER, PASSWORD, acl=True) as broker:
        yield broker


@pytest.fixture(scope="module")
def grants(secured: Secured) -> Grants:
    return Grants(secured.plain)


@pytest.fixture(scope="module")
def seeded(secured: Secured) -> str:
    """A topic of RECORDS records in 3 partitions, written through the super user's listener."""
    topic = f"acl-{uuid.uuid4().hex[:12]}"
    done = lumu_as_admin(
        secured, "produce", "-t", topic, "--rate", "0", "--count", str(RECORDS),
        "--partitions", "3", "--invalid-ratio", "0.05", "--seed", "18",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return topic


def lumu_as_admin(secured: Secured, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMU_")}
    return subprocess.run(
        [*LUMU, *args, "-b", secured.plain], env=env,
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def lumu(secured: Secured, *args: str) -> subprocess.CompletedProcess[str]:
    """lumu as the test user, through SASL_SSL, with --timeout TIMEOUT. A refusal that does not
    come (a hang) fails the test here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMU_")}
    config = str(secured.properties("client.properties"))
    return subprocess.run(
        [*LUMU, *args, "-F", config, "--timeout", str(TIMEOUT)], env=env,
        capture_output=True, text=True, timeout=TIMEOUT * 6, check=False,
    )  # fmt: skip


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command ends with (exit 3, no traceback)."""
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    return done.stderr.splitlines()[-1]


def not_authorized(operation: str, kind: str, name: str, grant: str) -> str:
    return f"lumu: not authorized to {operation} {kind} '{name}' (grant {grant})"


def not_visible(topic: str, grant: str) -> str:
    return (
        f"lumu: topic '{topic}' does not exist or is not visible to this principal (DESCRIBE on "
        f"topic '{topic}'; grant {grant} on topic '{topic}', which includes it)"
    )


def all_but_one(rules: list[Acl]) -> Iterator[tuple[Acl, list[Acl]]]:
    for index, rule in enumerate(rules):
        yield rule, rules[:index] + rules[index + 1 :]


def each_is_needed(
    secured: Secured, grants: Grants, rules: list[Acl], lines: list[str], *args: str
) -> None:
    """With every rule but one granted, in turn, `lumu *args` is refused with that one's line."""
    for (missing, granted), line in zip(all_but_one(rules), lines, strict=True):
        grants.only(granted)
        assert refusal(lumu(secured, *args)) == line, missing


def test_produce_needs_write_and_create_on_its_topic(secured: Secured, grants: Grants) -> None:
    topic = f"acl-produce-{uuid.uuid4().hex[:12]}"
    rules = acls.produce(topic)
    assert [str(rule) for rule in rules] == [
        f"WRITE on topic '{topic}'",
        f"CREATE on topic '{topic}'",
    ]
    expected = [
        not_visible(topic, "WRITE"),  # without WRITE (or DESCRIBE) it cannot even see it
        not_authorized("CREATE", "topic", topic, f"CREATE on topic '{topic}'"),
    ]
    args = ("produce", "-t", topic, "--rate", "0", "--count", "500", "--seed", "3")
    each_is_needed(secured, grants, rules, expected, *args)

    grants.only(rules)
    created = lumu(secured, *args)
    assert created.returncode == 0, created.stderr
    assert summary(created)["delivered"] == 500

    # The topic exists now: WRITE alone is enough to add to it; DESCRIBE alone is not.
    grants.only(acls.produce(topic, create=False))
    added = lumu(secured, *args)
    assert added.returncode == 0, added.stderr
    assert reference(secured.plain, topic).messages == 1000
    grants.only([Acl("DESCRIBE", acls.TOPIC, topic)])  # an idempotent producer needs WRITE
    line = refusal(lumu(secured, *args))
    assert line == not_authorized("WRITE", "topic", topic, f"WRITE on topic '{topic}'")


def test_track_needs_each_acl_of_its_list_and_counts_exactly_with_them(
    secured: Secured, grants: Grants, seeded: str
) -> None:
    topic = seeded
    ref = reference(secured.plain, topic)

    def expected(group: str) -> list[str]:
        state = f"{group}-lumu-state"
        return [
            not_visible(topic, "READ"),
            not_authorized("READ", "group", group, f"READ on group '{group}'"),
            not_authorized("READ", "topic", state, f"READ on topic '{state}'"),
            not_authorized("WRITE", "topic", state, f"WRITE on topic '{state}'"),
            not_authorized("CREATE", "topic", state, f"CREATE on topic '{state}'"),
            not_authorized(
                "DESCRIBE_CONFIGS", "topic", state, f"DESCRIBE_CONFIGS on topic '{state}'"
            ),
            not_authorized(
                "WRITE",
                "transactional id",
                f"lumu-{group}-XXXXXXXXXXXX",
                f"WRITE on transactional ids prefixed 'lumu-{group}-'",
            ),
        ]

    for index in range(len(acls.track(topic, "g"))):
        name = f"acl-track-{index}-{uuid.uuid4().hex[:8]}"  # nothing left from the run before
        missing, granted = list(all_but_one(acls.track(topic, name)))[index]
        grants.only(granted)
        line = refusal(lumu(secured, "track", "-t", topic, "-g", name, "-e", "--from-beginning"))
        masked = re.sub(rf"'lumu-{name}-[0-9a-f]{{12}}'", f"'lumu-{name}-XXXXXXXXXXXX'", line)
        assert masked == expected(name)[index], missing

    name = f"acl-track-{uuid.uuid4().hex[:8]}"
    grants.only(acls.track(topic, name))
    tracked = lumu(secured, "track", "-t", topic, "-g", name, "-e", "--from-beginning")
    assert tracked.returncode == 1, tracked.stderr  # 1: the invalid records
    result = summary(tracked)
    assert (result["messages"], result["unique_ips"]) == (ref.messages, ref.unique_ips)
    assert result["invalid_by_reason"] == ref.invalid

    # `lumu state` reads what it saved, with its own, shorter list.
    saved = acls.saved(name)
    state = f"{name}-lumu-state"
    lines = [
        not_visible(state, "READ"),
        not_authorized("DESCRIBE_CONFIGS", "topic", state, f"DESCRIBE_CONFIGS on topic '{state}'"),
        not_authorized("DESCRIBE", "group", name, f"DESCRIBE on group '{name}'"),
    ]
    each_is_needed(secured, grants, saved, lines, "state", "-g", name)
    grants.only(saved)
    shown = lumu(secured, "state", "-g", name, "--json")
    assert shown.returncode == 0, shown.stderr
    assert f'"unique_ips": {ref.unique_ips}' in shown.stdout

    # --reset deletes the group's offsets: DELETE on the group, beside what track needs.
    reset = acls.reset(topic, name)
    grants.only(reset[:-1])
    line = refusal(lumu(secured, "track", "-t", topic, "-g", name, "-e", "--reset"))
    assert line == not_authorized("DELETE", "group", name, f"DELETE on group '{name}'")
    grants.only(reset)
    again = lumu(secured, "track", "-t", topic, "-g", name, "-e", "--reset")
    assert again.returncode == 1, again.stderr
    assert "state records discarded" in again.stderr
    assert summary(again)["unique_ips"] == ref.unique_ips


def test_track_without_state_needs_only_the_topic_and_the_group(
    secured: Secured, grants: Grants, seeded: str
) -> None:
    topic, group = seeded, f"acl-nostate-{uuid.uuid4().hex[:8]}"
    rules = acls.track(topic, group, state=False)
    expected = [
        not_visible(topic, "READ"),
        not_authorized("READ", "group", group, f"READ on group '{group}'"),
    ]
    args = ("track", "-t", topic, "-g", group, "-e", "--from-beginning", "--no-state")
    each_is_needed(secured, grants, rules, expected, *args)
    grants.only(rules)
    done = lumu(secured, *args)
    assert done.returncode == 1, done.stderr
    ref = reference(secured.plain, topic)
    assert (summary(done)["messages"], summary(done)["unique_ips"]) == (
        ref.messages,
        ref.unique_ips,
    )


def test_serve_counts_exactly_with_the_track_list_and_stops_on_a_refusal(
    secured: Secured, grants: Grants, seeded: str
) -> None:
    topic, group = seeded, f"acl-serve-{uuid.uuid4().hex[:8]}"
    ref = reference(secured.plain, topic)
    config = str(secured.properties("client.properties"))
    args = ("serve", "127.0.0.1:0", "-F", config, "-t", topic, "-g", group, "--from-beginning")
    grants.only(acls.track(topic, group))
    with running("", topic, *args) as (process, url):
        count = count_when(url, ref.messages)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert count["unique_ips"] == ref.unique_ips

    # Its group's READ taken away, the next serve is refused at its join: one line, exit 3.
    other = f"{group}-2"
    grants.only([rule for rule in acls.track(topic, other) if rule.resource != acls.GROUP])
    with running("", topic, "serve", "127.0.0.1:0", "-F", config, "-g", other) as (process, _):
        _, err = process.communicate(timeout=TIMEOUT * 6)
    assert process.returncode == 3, err
    line = not_authorized("READ", "group", other, f"READ on group '{other}'")
    assert err.splitlines()[-1] == line
