"""Reading an x-www-form-urlencoded body (token endpoint, consent form)."""

from urllib.parse import parse_qsl

from fastapi import Request

from espace_api.auth.issuer import OAuthError

MAX_FORM_BYTES = 64 * 1024


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """The (name, value) pairs of a form body; OAuthError if the body is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "use application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError(400, "invalid_request", "request body is too large")
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "malformed form body") from None
