"""Identity kinds: one module per kind, behind one interface.

Each kind turns a `VerifiedToken` (whatever source issued it) into an `Identity`, enforcing
what that kind of caller must carry: a patient is bound to one Patient, a machine to a
registered client and its organisation, a professional to an RPPS number, an operator to the
`operator` scope.
"""

from typing import Protocol

from espace_api.auth.identity import Identity
from espace_api.auth.kinds.operator import OperatorKind
from espace_api.auth.kinds.patient import PatientKind
from espace_api.auth.kinds.system import SystemKind
from espace_api.auth.kinds.user import UserKind
from espace_api.auth.sources import VerifiedToken
from espace_api.storage.auth_repository import AuthRepository


class IdentityKind(Protocol):
    """Builds the Identity of one kind of caller from a verified token."""

    name: str

    async def identity(self, token: VerifiedToken) -> Identity: ...


def all_kinds(repo: AuthRepository) -> dict[str, IdentityKind]:
    """Every kind, by name."""
    kinds: list[IdentityKind] = [PatientKind(repo), SystemKind(), UserKind(), OperatorKind()]
    return {k.name: k for k in kinds}
