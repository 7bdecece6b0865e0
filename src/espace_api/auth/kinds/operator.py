"""Operator: administration (enrolment, client registration, ops endpoints)."""

from espace_api.auth.identity import Identity, ScopeSet
from espace_api.auth.jwt import TokenError
from espace_api.auth.sources import VerifiedToken


class OperatorKind:
    """Only the built-in issuer mints operator tokens, and they must carry `operator`."""

    name = "operator"

    async def identity(self, token: VerifiedToken) -> Identity:
        """The operator's Identity."""
        scopes = ScopeSet.parse(token.scope)
        if token.source != "builtin" or not scopes.has("operator"):
            raise TokenError("TOKEN_CLAIMS", "operator token lacks the operator scope")
        return Identity(
            kind="operator",
            subject=token.subject,
            scopes=scopes,
            client_id=token.client_id,
            token_id=token.token_id,
            purpose=token.purpose,
        )
