"""The authorization server of SMART App Launch (standalone patient launch).

    app --GET /auth/authorize--> here: check client, exact redirect URI, PKCE S256, aud, scope
        --302--> patient OIDC provider (sign-in) --302--> GET /auth/callback: verify, find the
        patient's space by INS --200--> consent page --POST /auth/consent--> grant recorded as
        a Consent of the patient, one-time code --303--> app's redirect URI (code, state)
    app --POST /auth/token (authorization_code + code_verifier)--> access token (+ refresh
        token with offline_access/online_access, + id_token with openid)
    app --POST /auth/token (refresh_token)--> new access token and a NEW refresh token; the
        old one is spent, and presenting a spent one again revokes the whole grant.

Errors before the redirect URI is trusted (unknown client, unregistered redirect URI) are
shown to the browser, never redirected (RFC 6749 section 4.1.2.1); later ones go back to the
app as `error` parameters with its `state`. Token-endpoint errors are RFC 6749 section 5.2.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from espace_api.auth.identity import Identity, ScopeSet
from espace_api.auth.issuer import ASSERTION_TYPE, OAuthError
from espace_api.auth.jwt import TokenError, normalise_url
from espace_api.auth.services import AuthServices
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.resources import service
from espace_api.resources.behaviour import Behaviours
from espace_api.resources.service import Context
from espace_api.smart import pkce
from espace_api.smart.consent import grant_consent
from espace_api.smart.login import LoginError, PatientLogin
from espace_api.smart.page import consent_page
from espace_api.smart.scopes import REFRESH_SCOPES, chosen, narrow_app, narrower
from espace_api.storage import repository
from espace_api.storage import smart_repository as sql
from espace_api.storage.auth_repository import ClientRow
from espace_api.storage.smart_repository import CodeRow, GrantRow, RefreshRow, RequestRow

CONSENT = REGISTRY["Consent"]
MAX_STATE = 1024


@dataclass(frozen=True)
class Redirect:
    """Send the browser to `url`."""

    url: str


@dataclass(frozen=True)
class Page:
    """Show the browser this HTML."""

    html: str


def _with_query(url: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _app_error(redirect_uri: str, state: str | None, error: str, description: str) -> Redirect:
    """An authorization error sent back to the app (RFC 6749 section 4.1.2.1)."""
    return Redirect(
        _with_query(
            redirect_uri, {"error": error, "error_description": description, "state": state}
        )
    )


class SmartServer:
    """Authorize, sign-in callback, consent, and the two token grants of an app."""

    def __init__(
        self,
        *,
        settings: Settings,
        auth: AuthServices,
        engine: Any,
        clock: Clock,
        behaviours: Behaviours,
        login: PatientLogin | None,
    ) -> None:
        assert auth.smart is not None
        self.settings = settings
        self.auth = auth
        self.repo = auth.smart
        self.engine = engine
        self.clock = clock
        self.behaviours = behaviours
        self.login = login
        self.base = normalise_url(settings.base_url)
        self.consent_url = f"{self.base}/auth/consent"
        self._last_purge: datetime | None = None

    # ------------------------------------------------------------------ authorize
    async def authorize(self, params: Mapping[str, str]) -> Redirect:
        """`GET /auth/authorize`: check the request, then send the patient to sign in."""
        app = await self._app(params.get("client_id"))
        redirect_uri = params.get("redirect_uri") or ""
        if redirect_uri not in (app.redirect_uris or []):
            raise FhirError.bad_request(
                "redirect_uri is not one the app registered (exact match)", "INVALID_REDIRECT_URI"
            )
        state = params.get("state")
        if not state or len(state) > MAX_STATE:
            return _app_error(redirect_uri, None, "invalid_request", "state is required")
        if params.get("response_type") != "code":
            return _app_error(
                redirect_uri, state, "unsupported_response_type", "response_type must be code"
            )
        challenge = params.get("code_challenge") or ""
        if params.get("code_challenge_method") != "S256" or not pkce.valid_challenge(challenge):
            return _app_error(
                redirect_uri,
                state,
                "invalid_request",
                "PKCE with code_challenge_method S256 and a code_challenge is required",
            )
        if normalise_url(params.get("aud") or "") != self.base:
            return _app_error(redirect_uri, state, "invalid_request", "aud is not this server")
        scope = narrow_app(params.get("scope") or "", app.scopes)
        if not scope:
            return _app_error(
                redirect_uri, state, "invalid_scope", "none of the scopes may be granted"
            )
        if self.login is None:
            return _app_error(
                redirect_uri, state, "temporarily_unavailable", "patient sign-in is not set up"
            )
        now = self.clock.now()
        await self._purge(now)
        handle, provider_nonce = pkce.new_handle(), pkce.new_handle()
        nonce = params.get("nonce")
        await self.repo.create_request(
            RequestRow(
                handle_hash=pkce.digest(handle),
                client_id=app.client_id,
                redirect_uri=redirect_uri,
                scope=scope,
                state=state,
                code_challenge=challenge,
                nonce=nonce[:MAX_STATE] if nonce else None,
                provider_nonce=provider_nonce,
                expires=now + timedelta(seconds=self.settings.smart_request_seconds),
                consent_hash=None,
                patient_id=None,
                subject=None,
                done=False,
            )
        )
        return Redirect(self.login.redirect(handle, provider_nonce))

    async def _app(self, client_id: str | None) -> ClientRow:
        app = await self.auth.repo.get_client(client_id) if client_id else None
        if app is None or app.disabled or app.kind != "app":
            raise FhirError.bad_request("client_id is not a registered app", "UNKNOWN_CLIENT")
        return app

    # ------------------------------------------------------------------ sign-in callback
    async def callback(self, params: Mapping[str, str]) -> Redirect | Page:
        """`GET /auth/callback`: the provider signed the patient in; show the consent page."""
        now = self.clock.now()
        handle = params.get("state") or ""
        request = await self.repo.pending(pkce.digest(handle), now) if handle else None
        if request is None:
            raise FhirError.bad_request(
                "Unknown, expired or already used sign-in state", "STATE_MISMATCH"
            )
        if params.get("error") or not params.get("code") or self.login is None:
            return _app_error(
                request.redirect_uri, request.state, "access_denied", "sign-in did not complete"
            )
        try:
            who = await self.login.sign_in(params["code"], request.provider_nonce)
        except LoginError as exc:
            return _app_error(request.redirect_uri, request.state, "access_denied", exc.message)
        consent = pkce.new_handle()
        bound = await self.repo.signed_in(
            pkce.digest(handle),
            now,
            consent_hash=pkce.digest(consent),
            patient_id=who.patient_id,
            subject=who.subject,
        )
        if bound is None:
            raise FhirError.bad_request("This sign-in was already used", "STATE_MISMATCH")
        app = await self._app(request.client_id)
        return Page(
            consent_page(
                app_name=app.name or app.client_id,
                catalogue=app.catalogue or {},
                scopes=request.scope.split(),
                handle=consent,
                action=self.consent_url,
            )
        )

    # ------------------------------------------------------------------ consent
    async def consent(self, handle: str, decision: str, ticked: set[str]) -> Redirect:
        """`POST /auth/consent`: record the grant (a Consent) and send the app its code."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            request = await sql.take_consent(conn, pkce.digest(handle), now)
            if request is None or request.patient_id is None or request.subject is None:
                raise FhirError.bad_request(
                    "This consent form expired or was already answered", "CONSENT_EXPIRED"
                )
            if decision != "approve":
                return _app_error(
                    request.redirect_uri, request.state, "access_denied", "the patient refused"
                )
            app = await self._app(request.client_id)
            scope = chosen(request.scope, ticked)
            grant_id = self.clock.ids()
            end = now + timedelta(days=self.settings.smart_grant_days)
            ctx = self._context(conn, request.patient_id, request.subject)
            created = await service.create(
                ctx,
                CONSENT,
                grant_consent(
                    grant_id=grant_id,
                    patient_id=request.patient_id,
                    client_id=app.client_id,
                    app_name=app.name or app.client_id,
                    scope=scope,
                    start=now,
                    end=end,
                ),
                system_write=True,
            )
            assert created.id is not None
            await sql.insert_grant(
                conn,
                GrantRow(
                    id=grant_id,
                    patient_id=request.patient_id,
                    client_id=app.client_id,
                    subject=request.subject,
                    scope=scope,
                    consent_id=created.id,
                    created=now,
                    expires=end,
                    revoked=None,
                ),
            )
            code = pkce.new_handle()
            await sql.insert_code(
                conn,
                CodeRow(
                    code_hash=pkce.digest(code),
                    grant_id=grant_id,
                    patient_id=request.patient_id,
                    client_id=app.client_id,
                    redirect_uri=request.redirect_uri,
                    code_challenge=request.code_challenge,
                    nonce=request.nonce,
                    expires=now + timedelta(seconds=self.settings.smart_code_seconds),
                    used=None,
                ),
            )
        return Redirect(_with_query(request.redirect_uri, {"code": code, "state": request.state}))

    def _context(self, conn: Any, patient_id: str, subject: str) -> Context:
        """The patient, as the author of their grant's Consent."""
        identity = Identity(
            kind="patient",
            subject=subject,
            scopes=ScopeSet.parse("patient/Consent.cu"),
            patient_id=patient_id,
        )
        return Context(conn, identity, self.settings, self.clock, self.behaviours)

    # ------------------------------------------------------------------ token endpoint
    async def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """`POST /auth/token` for grant_type authorization_code and refresh_token."""
        app = await self._client(form)
        if form.get("grant_type") == "authorization_code":
            return await self._code(app, form)
        return await self._refresh(app, form)

    async def _client(self, form: Mapping[str, str]) -> ClientRow:
        """The app calling: private_key_jwt for a confidential app, client_id for a public
        one (which PKCE then binds to the authorization)."""
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise OAuthError(
                    400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
                )
            try:
                app, _ = await self.auth.require_issuer().check_assertion(
                    assertion, form.get("client_id")
                )
            except TokenError as exc:
                raise OAuthError(401, "invalid_client", exc.message) from None
        else:
            client_id = form.get("client_id")
            found = await self.auth.repo.get_client(client_id) if client_id else None
            if found is None or found.disabled:
                raise OAuthError(401, "invalid_client", "client is not registered or disabled")
            if found.jwks.get("keys"):
                raise OAuthError(
                    401, "invalid_client", "a confidential app authenticates with private_key_jwt"
                )
            app = found
        if app.kind != "app":
            raise OAuthError(400, "unauthorized_client", "this client may not use this grant")
        return app

    async def _code(self, app: ClientRow, form: Mapping[str, str]) -> dict[str, Any]:
        code, verifier = form.get("code"), form.get("code_verifier")
        if not code or not form.get("redirect_uri"):
            raise OAuthError(400, "invalid_request", "code and redirect_uri are required")
        if not verifier:
            raise OAuthError(400, "invalid_request", "code_verifier is required (PKCE)")
        now = self.clock.now()
        used = await self.repo.use_code(pkce.digest(code), now)
        if used is None:
            raise OAuthError(400, "invalid_grant", "unknown authorization code")
        row, first = used
        if row.client_id != app.client_id:
            raise OAuthError(400, "invalid_grant", "the code was issued to another client")
        if not first:
            # RFC 6749 section 4.1.2: a code used twice revokes what it was used for.
            await self.revoke_grant(row.grant_id)
            raise OAuthError(400, "invalid_grant", "the code was already used; grant revoked")
        if row.expires <= now:
            raise OAuthError(400, "invalid_grant", "the code has expired")
        if form.get("redirect_uri") != row.redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match the request")
        if not pkce.verifier_matches(verifier, row.code_challenge):
            raise OAuthError(400, "invalid_grant", "code_verifier does not match (PKCE)")
        grant = await self._grant(row.grant_id, now)
        return await self._issue(app, grant, grant.scope, row.nonce)

    async def _refresh(self, app: ClientRow, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError(400, "invalid_request", "refresh_token is required")
        now = self.clock.now()
        used = await self.repo.use_refresh(pkce.digest(token), now)
        if used is None:
            raise OAuthError(400, "invalid_grant", "unknown refresh token")
        row, first = used
        grant = await self.repo.grant(row.grant_id)
        if grant is None or grant.client_id != app.client_id:
            raise OAuthError(400, "invalid_grant", "the refresh token was issued to another client")
        if not first:
            await self.revoke_grant(row.grant_id)
            raise OAuthError(
                400, "invalid_grant", "the refresh token was already used; grant revoked"
            )
        if row.expires <= now:
            raise OAuthError(400, "invalid_grant", "the refresh token has expired")
        grant = await self._grant(row.grant_id, now)
        scope = grant.scope
        if form.get("scope"):
            narrowed = narrower(form["scope"], grant.scope)
            if narrowed is None:
                raise OAuthError(400, "invalid_scope", "a refresh cannot widen the grant")
            scope = narrowed
        return await self._issue(app, grant, scope, None)

    async def _grant(self, grant_id: str, now: datetime) -> GrantRow:
        grant = await self.repo.grant(grant_id)
        if grant is None or not await self.repo.grant_active(grant_id, now):
            raise OAuthError(400, "invalid_grant", "the grant was revoked or has expired")
        return grant

    async def _issue(
        self, app: ClientRow, grant: GrantRow, scope: str, nonce: str | None
    ) -> dict[str, Any]:
        """The token response: access token, patient context, id_token, refresh token."""
        issuer = self.auth.require_issuer()
        access = await issuer.mint(
            kind="patient",
            subject=grant.subject,
            scope=scope,
            client_id=app.client_id,
            patient_id=grant.patient_id,
            grant_id=grant.id,
        )
        body = {**access.response(), "patient": grant.patient_id}
        scopes = set(scope.split())
        if "openid" in scopes:
            body["id_token"] = await self._id_token(app, grant, nonce, "fhirUser" in scopes)
        if scopes & REFRESH_SCOPES:
            refresh = pkce.new_handle()
            now = self.clock.now()
            expires = min(now + timedelta(days=self.settings.smart_refresh_days), grant.expires)
            async with self.engine.begin() as conn:
                await sql.insert_refresh(
                    conn,
                    RefreshRow(
                        token_hash=pkce.digest(refresh),
                        grant_id=grant.id,
                        patient_id=grant.patient_id,
                        expires=expires,
                        used=None,
                    ),
                )
            body["refresh_token"] = refresh
        return body

    async def _id_token(
        self, app: ClientRow, grant: GrantRow, nonce: str | None, fhir_user: bool
    ) -> str:
        """An OpenID Connect ID token for the app, signed by the server's key."""
        issuer = self.auth.require_issuer()
        now = int(self.clock.now().timestamp())
        claims: dict[str, Any] = {
            "iss": issuer.issuer,
            "sub": grant.subject,
            "aud": app.client_id,
            "iat": now,
            "exp": now + issuer.ttl,
        }
        if nonce:
            claims["nonce"] = nonce
        if fhir_user:
            claims["fhirUser"] = f"{self.base}/Patient/{grant.patient_id}"
        assert self.auth.keys is not None
        return await self.auth.keys.sign(claims)

    # ------------------------------------------------------------------ revocation
    async def revoke_grant(self, grant_id: str) -> None:
        """Revoke a grant (code or refresh token reuse): its Consent becomes inactive, which
        revokes the grant row in the same transaction (smart.consent.AppGrants)."""
        grant = await self.repo.grant(grant_id)
        if grant is None:
            return
        async with self.engine.begin() as conn:
            ctx = self._context(conn, grant.patient_id, grant.subject)
            row = await repository.get_current(
                conn, CONSENT.name, grant.consent_id, ctx.policy(CONSENT), for_update=True
            )
            if row is not None and row.json is not None and not row.deleted:
                content = orjson.loads(row.json)
                if content.get("status") == "active":
                    content["status"] = "inactive"
                    await ctx.write_update(CONSENT, row, content)
            await sql.revoke_grant(conn, grant_id, self.clock.now())

    async def _purge(self, now: datetime) -> None:
        """Forget expired requests, codes and refresh tokens, at most once a minute per
        process."""
        if self._last_purge is None or now - self._last_purge > timedelta(minutes=1):
            self._last_purge = now
            await self.repo.purge(now)
