"""The access policy's predicate cache (access/policy.visible): one predicate per caller,
table object and second, never one built for another alias of the same name."""

from datetime import UTC, datetime, timedelta

from sqlalchemy.sql.util import find_tables

from espace_api.access import policy
from espace_api.auth.identity import Identity, ScopeSet
from espace_api.db.schema import resources
from espace_api.fhir.registry import REGISTRY

DOCTOR = Identity(
    kind="user",
    subject="rpps-1",
    scopes=ScopeSet.parse("user/*.rs"),
    practitioner="rpps-1",
    profession="10",
)


def tables_of(predicate) -> set:
    return set(find_tables(predicate, include_aliases=True))


def test_a_predicate_is_bound_to_its_own_alias():
    now = datetime(2026, 11, 30, 12, 0, 0, 500, tzinfo=UTC)
    patient = REGISTRY["Patient"]
    first, second = resources.alias("chain_a0"), resources.alias("chain_a0")  # same name
    p1 = policy.visible(DOCTOR, patient, first, now)
    p2 = policy.visible(DOCTOR, patient, second, now)
    assert first in tables_of(p1) and second not in tables_of(p1)
    assert second in tables_of(p2) and first not in tables_of(p2)


def test_same_caller_table_and_second_share_one_predicate(monkeypatch):
    monkeypatch.setattr(policy, "_SECOND", None)  # whatever second earlier tests reached
    now = datetime.now(UTC).replace(microsecond=100)
    docs = REGISTRY["DocumentReference"]
    a = policy.visible(DOCTOR, docs, resources, now)
    assert policy.visible(DOCTOR, docs, resources, now + timedelta(milliseconds=800)) is a
    assert policy.visible(DOCTOR, docs, resources, now + timedelta(seconds=1)) is not a
    # The cache moved on to the newer second: the older one is not kept any more.
    assert policy.visible(DOCTOR, docs, resources, now) is not a
