"""System: practitioner software (LGC) acting machine to machine for an organisation."""

from espace_api.auth.identity import Identity, ScopeSet
from espace_api.auth.jwt import TokenError
from espace_api.auth.sources import VerifiedToken


class SystemKind:
    """A registered client (`client_id`) acting for its organisation (FINESS, from its
    registration) and optionally a professional (RPPS) named when the token was requested."""

    name = "system"

    async def identity(self, token: VerifiedToken) -> Identity:
        """The machine's Identity; its subject is its client id (one depositor per client)."""
        if not token.client_id or not token.organization:
            raise TokenError("TOKEN_CLAIMS", "machine token names no client or organization")
        return Identity(
            kind="system",
            subject=token.client_id,
            scopes=ScopeSet.parse(token.scope),
            client_id=token.client_id,
            organization=token.organization,
            practitioner=token.practitioner,
            token_id=token.token_id,
            purpose=token.purpose,
            profession=token.profession if token.practitioner else None,  # a person's
        )
