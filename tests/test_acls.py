"""lumu_cli/acls.py: the ACL lists, the README that shows them, and the refusal lines.

tests/integration/test_acls.py proves each list on a broker with an authorizer; these tests
hold the README's table and commands to the same lists, and the wording of every refusal.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lumu_cli import acls
from lumu_cli.acls import GROUP, TOPIC, TRANSACTIONAL_ID, Acl
from lumu_cli.errors import BrokerError, ExitCode, NotAuthorized

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SECTION = README.split("## ACLs: lumu as a least-privilege principal", 1)[1].split("\n## ", 1)[0]


def table_rows() -> list[tuple[str, str, str, str, str]]:
    rows = re.findall(r"^\| (.*?) \| (\S+) \| (.+?) \| (.+?) \| (.+?) \|$", SECTION, re.M)
    return [row for row in rows if row[1] not in ("operation", "---")]


def test_the_readme_table_is_the_lists_of_acls_py() -> None:
    def rows(label: str, rules: list[Acl]) -> list[tuple[str, str, str, str, str]]:
        return [
            (
                label if index == 0 else "",
                rule.operation,
                rule.resource.replace("-", " "),
                f"`{rule.name}`" + (" (prefix)" if rule.prefixed else ""),
                rule.why,
            )
            for index, rule in enumerate(rules)
        ]

    tracked = acls.track("TOPIC", "GROUP")
    expected = [
        *rows("`produce`", acls.produce("TOPIC")),
        *rows("`track`, `serve`", tracked),
        *rows("`--reset` adds", acls.reset("TOPIC", "GROUP")[len(tracked) :]),
        *rows("`lumu state`", acls.saved("GROUP")),
    ]
    assert [tuple(cell.strip() for cell in row) for row in table_rows()] == expected


def test_no_state_needs_the_first_two_rows_of_track_as_the_readme_says() -> None:
    assert acls.track("t", "g", state=False) == acls.track("t", "g")[:2]
    assert "need only the first two rows of `track`" in SECTION


def test_the_readme_commands_grant_the_track_list() -> None:
    for rule in acls.track("device-events", "lumu-track"):
        kafka = f"kafka-acls.sh $ADMIN --add --allow-principal User:lumu {rule.kafka_acls()}"
        confluent = (
            f"confluent kafka acl create --allow --service-account sa-123456 {rule.confluent()}"
        )
        assert f"\n{kafka}\n" in SECTION
        assert f"\n{confluent}\n" in SECTION


@pytest.mark.parametrize(
    ("rule", "kafka", "confluent"),
    [
        (
            Acl("DESCRIBE_CONFIGS", TOPIC, "g-lumu-state"),
            "--operation DescribeConfigs --topic g-lumu-state",
            "--operations describe-configs --topic g-lumu-state",
        ),
        (
            Acl("READ", GROUP, "g"),
            "--operation Read --group g",
            "--operations read --consumer-group g",
        ),
        (
            Acl("WRITE", TRANSACTIONAL_ID, "lumu-g-", prefixed=True),
            "--operation Write --transactional-id lumu-g- --resource-pattern-type prefixed",
            "--operations write --transactional-id lumu-g- --prefix",
        ),
    ],
)
def test_a_rule_as_kafka_acls_and_confluent_cli_arguments(
    rule: Acl, kafka: str, confluent: str
) -> None:
    assert rule.kafka_acls() == kafka
    assert rule.confluent() == confluent


def test_the_names_lumu_gives_its_kafka_resources() -> None:
    assert acls.state_topic("lumu-track") == "lumu-track-lumu-state"
    assert acls.transactional_prefix("lumu-track") == "lumu-lumu-track-"
    [*_, txn] = acls.track("t", "lumu-track")
    assert (txn.resource, txn.name, txn.prefixed) == (TRANSACTIONAL_ID, "lumu-lumu-track-", True)


def test_a_refusal_names_the_operation_the_resource_and_the_acl_to_grant() -> None:
    refused = Acl("WRITE", TRANSACTIONAL_ID, "lumu-g-", prefixed=True).refused(
        name="lumu-g-3f2a9c41d0e7"
    )
    assert isinstance(refused, NotAuthorized)
    assert isinstance(refused, BrokerError)
    assert refused.exit_code == ExitCode.BROKER
    assert str(refused) == (
        "not authorized to WRITE transactional id 'lumu-g-3f2a9c41d0e7' "
        "(grant WRITE on transactional ids prefixed 'lumu-g-')"
    )
    implied = Acl("READ", GROUP, "g").refused("DESCRIBE")  # an operation READ implies
    assert str(implied) == "not authorized to DESCRIBE group 'g' (grant READ on group 'g')"


def test_a_topic_that_may_not_be_described_is_never_said_plainly_not_to_exist() -> None:
    line = str(acls.not_visible(Acl("READ", TOPIC, "t")))
    assert line == (
        "topic 't' does not exist or is not visible to this principal "
        "(DESCRIBE on topic 't'; grant READ on topic 't', which includes it)"
    )
    assert line in SECTION.replace("device-events", "t")
