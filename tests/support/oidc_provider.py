"""A patient OpenID Connect provider served by the test suite over real HTTP (127.0.0.1).

It has its own RS256 key and serves `/jwks`, `/authorize` (the person "signing in" is the
INS the test sets in `next_ins`: it answers at once with a code for the redirect URI) and
`/token` (client_secret_post; returns an ID token with the INS claim and the nonce).
"""

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.support.auth import VendorKey
from tests.support.fhir import INS_TEST

ISSUER = "https://patient-idp.test.invalid"
CLIENT_ID = "espace-api"
CLIENT_SECRET = "provider-secret"


class TestProvider:
    __test__ = False  # not a test class (pytest collects Test* names)

    """The provider's state: its key, who signs in next, the codes it handed out."""

    def __init__(self) -> None:
        self.key = VendorKey("RS256", kid="idp-1")
        self.next_ins: str | None = None
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                if url.path == "/jwks":
                    return self._send(200, provider.key.jwks)
                if url.path == "/authorize" and query.get("client_id") == CLIENT_ID:
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = {**query, "ins": provider.next_ins}
                    target = f"{query['redirect_uri']}?" + urlencode(
                        {"code": code, "state": query["state"]}
                    )
                    return self._send(302, {}, {"Location": target})
                return self._send(400, {"error": "invalid_request"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                provider.token_requests += 1
                issued = provider.codes.pop(form.get("code", ""), None)
                if (
                    issued is None
                    or form.get("client_secret") != CLIENT_SECRET
                    or form.get("redirect_uri") != issued["redirect_uri"]
                ):
                    return self._send(400, {"error": "invalid_grant"})
                now = int(time.time())
                claims = {
                    "iss": ISSUER,
                    "aud": CLIENT_ID,
                    "sub": f"idp-{issued['ins']}",
                    "iat": now,
                    "exp": now + 300,
                    "nonce": issued.get("nonce"),
                    "ins": f"{INS_TEST}|{issued['ins']}" if issued["ins"] else None,
                }
                id_token = provider.key.sign({k: v for k, v in claims.items() if v is not None})
                return self._send(200, {"id_token": id_token, "token_type": "Bearer"})

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def config(self) -> dict[str, Any]:
        """This provider as an AUTH_OIDC_PROVIDERS entry."""
        return {
            "issuer": ISSUER,
            "audience": CLIENT_ID,
            "jwks_url": f"{self.url}/jwks",
            "kind": "patient",
            "authorization_url": f"{self.url}/authorize",
            "token_url": f"{self.url}/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }

    def __enter__(self) -> "TestProvider":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
