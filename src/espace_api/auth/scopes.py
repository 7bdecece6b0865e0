"""Scope arithmetic: which of the requested scopes a client or provider may be granted."""

from espace_api.auth.identity import Scope, ScopeSet

# Non-resource scopes this server understands (anything else is dropped when granting).
SPECIAL_SCOPES = ("operator",)
# What a patient-authorised app (SMART App Launch, smart/) may ask besides patient/ scopes.
APP_SCOPES = ("launch/patient", "openid", "fhirUser", "offline_access", "online_access")

# Advertised in /.well-known/smart-configuration.
SCOPES_SUPPORTED = (
    "system/DocumentReference.c",
    "system/Binary.c",
    "system/List.c",
    "system/Patient.s",
    "patient/*.rs",
    "patient/*.cruds",
    "patient/DocumentReference.cruds",
    "patient/Binary.cruds",
    "user/*.rs",
    "system/*.cruds",
    "operator",
    *APP_SCOPES,
)


def covers(granted: Scope, wanted: Scope) -> bool:
    """Whether `granted` includes every right of `wanted`."""
    return (
        granted.context == wanted.context
        and granted.resource_type in ("*", wanted.resource_type)
        and wanted.permissions <= granted.permissions
        and granted.category in (None, wanted.category)
    )


def narrow(requested: str, ceiling: ScopeSet, specials: tuple[str, ...] = SPECIAL_SCOPES) -> str:
    """The requested scopes (space-separated) that `ceiling` covers, in request order;
    `specials`: the non-resource scopes that may be kept (when the ceiling has them)."""
    kept: list[str] = []
    for text in requested.split():
        scope = Scope.parse(text)
        if scope is None:
            ok = text in specials and ceiling.has(text)
        else:
            ok = any(covers(g, scope) for g in ceiling.scopes)
        if ok and text not in kept:
            kept.append(text)
    return " ".join(kept)


def invalid_scopes(text: str) -> list[str]:
    """Scopes in `text` this server does not understand (for registration checks)."""
    return [s for s in text.split() if Scope.parse(s) is None and s not in SPECIAL_SCOPES]


def invalid_app_scopes(text: str) -> list[str]:
    """Scopes in `text` a patient-authorised app may not be registered for: only patient/
    resource scopes and the SMART launch scopes (APP_SCOPES)."""
    bad = []
    for text_scope in text.split():
        scope = Scope.parse(text_scope)
        if text_scope not in APP_SCOPES and (scope is None or scope.context != "patient"):
            bad.append(text_scope)
    return bad
