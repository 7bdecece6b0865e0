"""User: a health professional at a screen, identified by their RPPS number."""

from espace_api.auth.identity import Identity, ScopeSet
from espace_api.auth.sources import VerifiedToken


class UserKind:
    """Professional users; what they may read is decided by the access policy (care
    relationship, masking, the profession matrix)."""

    name = "user"

    async def identity(self, token: VerifiedToken) -> Identity:
        """The professional's Identity; `practitioner` defaults to the subject (RPPS)."""
        return Identity(
            kind="user",
            subject=token.subject,
            scopes=ScopeSet.parse(token.scope),
            client_id=token.client_id,
            organization=token.organization,
            practitioner=token.practitioner or token.subject,
            token_id=token.token_id,
            purpose=token.purpose,
            profession=token.profession,
        )
