"""The scopes of an app grant: what may be asked, what the patient chooses on the page."""

from espace_api.auth.identity import Scope, ScopeSet
from espace_api.auth.scopes import APP_SCOPES, narrow

# Scopes the patient may untick on the consent page (the others carry no data).
CHOOSABLE_SPECIAL = ("offline_access", "online_access")
REFRESH_SCOPES = frozenset(CHOOSABLE_SPECIAL)

_ACTIONS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_SPECIAL_TEXT = {
    "launch/patient": "know which health space you opened it with",
    "openid": "know that it is you who signed in",
    "fhirUser": "know your Patient record's address",
    "offline_access": "keep its access while you are not using it, until you revoke it",
    "online_access": "keep its access while you are using it",
}


def narrow_app(requested: str, ceiling: str) -> str:
    """The requested scopes the app's registration covers (patient/ and launch scopes only,
    as registered), in request order, once each. A granular read scope
    (`patient/DocumentReference.rs?category=system|code`) is covered by the plain one."""
    return narrow(requested, ScopeSet.parse(ceiling), APP_SCOPES)


def choosable(scope: str) -> bool:
    """Whether the patient may refuse this scope and still authorise the app."""
    return scope in CHOOSABLE_SPECIAL or Scope.parse(scope) is not None


def describe(scope: str) -> str:
    """What a scope lets the app do, in words for the consent page."""
    if scope in _SPECIAL_TEXT:
        return _SPECIAL_TEXT[scope]
    parsed = Scope.parse(scope)
    if parsed is None:
        return scope
    actions = [name for letter, name in _ACTIONS.items() if letter in parsed.permissions]
    what = "all your records" if parsed.resource_type == "*" else f"your {parsed.resource_type}"
    if parsed.category is not None:
        what += f" of category {parsed.category[1]} only"
    return f"{', '.join(actions)} {what}"


def chosen(asked: str, ticked: set[str]) -> str:
    """What the patient grants: the asked scopes they ticked, plus those not choosable."""
    return " ".join(s for s in asked.split() if s in ticked or not choosable(s))


def narrower(requested: str, granted: str) -> str | None:
    """On refresh: the requested subset of the grant, or None if it asks for more."""
    wanted, have = requested.split(), set(granted.split())
    return " ".join(dict.fromkeys(wanted)) if set(wanted) <= have else None
