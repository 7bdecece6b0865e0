"""Auth commands of the `espace-api` CLI: dev tokens, client registration, vendor key helpers.

`token` and `clients add|list|disable` talk to the database of the configured settings and
work only with the built-in issuer. `keygen` and `assertion` are local helpers a vendor can
use to try the client_credentials flow with curl (see docs/auth.md).
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from espace_api.auth.clients import ClientRegistration
from espace_api.auth.keys import generate_private_key, load_private_pem, private_pem, public_jwk
from espace_api.auth.keys import sign as sign_jws
from espace_api.auth.keys import signer as signing_key
from espace_api.auth.services import AuthServices, build
from espace_api.clock import Clock
from espace_api.config import Settings, get_settings


def _run(action: Callable[[AuthServices], Awaitable[None]]) -> None:
    """Run `action` with auth services bound to the configured database."""
    from espace_api.db.embedded import ensure_database_url
    from espace_api.db.engine import make_engine

    base = get_settings()
    settings: Settings = base.model_copy(
        update={"database_url": ensure_database_url(base.database_url, base.data_dir)}
    )

    async def main() -> None:
        engine = make_engine(settings)
        try:
            await action(build(settings, engine, Clock()))
        finally:
            await engine.dispose()

    asyncio.run(main())


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def cmd_token(args: argparse.Namespace) -> None:
    """Print an access token minted by the built-in issuer."""
    defaults = {
        "patient": "patient/*.cruds",
        "system": "system/DocumentReference.c system/Binary.c system/Patient.s system/List.c",
        "user": "user/*.rs",
        "operator": "system/*.cruds operator",
    }
    if args.kind == "patient" and not args.patient:
        _fail("--patient is required for a patient token")
    if args.kind == "system" and not (args.client_id and args.organization):
        _fail("--client-id and --organization are required for a system token")
    subject = (
        args.subject
        or {
            "patient": f"patient-{args.patient}",
            "system": args.client_id,
            "user": "rpps-10001",
            "operator": "operator",
        }[args.kind]
    )

    async def action(services: AuthServices) -> None:
        try:
            issuer = services.require_issuer()
        except RuntimeError as exc:
            _fail(str(exc))
            return
        issued = await issuer.mint(
            kind=args.kind,
            subject=subject,
            scope=args.scopes or defaults[args.kind],
            client_id=args.client_id,
            patient_id=args.patient,
            organization=args.organization,
            practitioner=args.practitioner or (subject if args.kind == "user" else None),
            profession=args.profession,
            ttl_seconds=args.ttl,
        )
        print(issued.access_token)

    _run(action)


def cmd_clients_add(args: argparse.Namespace) -> None:
    """Register (or replace) a client from a public JWKS file."""
    try:
        jwks = json.loads(Path(args.jwks).read_text())
        reg = ClientRegistration(
            client_id=args.client_id,
            kind=args.kind,
            name=args.name,
            jwks=jwks,
            scopes=args.scopes,
            organization=args.organization,
        )
    except (OSError, ValueError) as exc:
        _fail(f"invalid client: {exc}")
        return

    async def action(services: AuthServices) -> None:
        created = await services.repo.upsert_client(**reg.stored(), now=Clock().now())
        print(f"client {reg.client_id} {'registered' if created else 'replaced'}")

    _run(action)


def cmd_clients_list(_: argparse.Namespace) -> None:
    """List registered clients."""

    async def action(services: AuthServices) -> None:
        for row in await services.repo.list_clients():
            state = "disabled" if row.disabled else "enabled"
            print(f"{row.client_id}\t{row.kind}\t{row.organization or '-'}\t{state}\t{row.scopes}")

    _run(action)


def cmd_clients_disable(args: argparse.Namespace) -> None:
    """Disable a client."""

    async def action(services: AuthServices) -> None:
        if not await services.repo.disable_client(args.client_id, Clock().now()):
            _fail(f"unknown client {args.client_id}")
        print(f"client {args.client_id} disabled")

    _run(action)


def cmd_keygen(args: argparse.Namespace) -> None:
    """Write a new private key (PEM) and its public JWKS, as a vendor would."""
    key = generate_private_key(args.alg)
    Path(args.private).write_text(private_pem(key))
    Path(args.private).chmod(0o600)
    jwks = {"keys": [public_jwk(key, args.alg, kid=args.kid)]}
    Path(args.jwks).write_text(json.dumps(jwks, indent=2) + "\n")
    print(f"wrote {args.private} (keep it secret) and {args.jwks} (register it)")


def make_assertion(
    client_id: str, key_pem: str, alg: str, kid: str, token_url: str, **extra: Any
) -> str:
    """A SMART Backend Services client assertion valid for five minutes."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        **{k: v for k, v in extra.items() if v},
    }
    return sign_jws(claims, signing_key(load_private_pem(key_pem), alg), alg, kid)


def cmd_assertion(args: argparse.Namespace) -> None:
    """Print a signed client assertion (for trying the token endpoint with curl)."""
    token_url = args.token_url or f"{get_settings().base_url.rstrip('/')}/auth/token"
    print(
        make_assertion(
            args.client_id,
            Path(args.key).read_text(),
            args.alg,
            args.kid,
            token_url,
            practitioner=args.practitioner,
            profession=args.profession,
        )
    )


def register_cli(subparsers: Any) -> None:
    """Add the `token`, `clients`, `keygen` and `assertion` commands to the CLI."""
    token = subparsers.add_parser("token", help="print a dev access token (built-in issuer)")
    token.add_argument("--kind", choices=["patient", "system", "user", "operator"], required=True)
    token.add_argument("--patient", help="Patient id (patient tokens)")
    token.add_argument("--subject", help="token sub (default depends on kind)")
    token.add_argument("--scopes", help="space-separated SMART scopes (default per kind)")
    token.add_argument("--client-id", help="registered client (system tokens)")
    token.add_argument("--organization", help="FINESS the client acts for (system tokens)")
    token.add_argument("--practitioner", help="RPPS of the professional (system/user tokens)")
    token.add_argument("--profession", help="national profession code (profession matrix)")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default AUTH_TOKEN_TTL)")
    token.set_defaults(func=cmd_token)

    clients = subparsers.add_parser("clients", help="manage registered clients")
    csub = clients.add_subparsers(dest="clients_command", required=True)
    add = csub.add_parser("add", help="register or replace a client")
    add.add_argument("--client-id", required=True)
    add.add_argument("--jwks", required=True, help="file with the client's public JWKS")
    add.add_argument("--kind", choices=["system", "operator"], default="system")
    add.add_argument("--scopes", required=True, help="scopes the client may be granted")
    add.add_argument("--organization", help="FINESS (required for system clients)")
    add.add_argument("--name", help="display name")
    add.set_defaults(func=cmd_clients_add)
    csub.add_parser("list", help="list clients").set_defaults(func=cmd_clients_list)
    disable = csub.add_parser("disable", help="disable a client")
    disable.add_argument("--client-id", required=True)
    disable.set_defaults(func=cmd_clients_disable)

    keygen = subparsers.add_parser("keygen", help="create a client key pair (vendor helper)")
    keygen.add_argument("--alg", choices=["ES384", "RS384"], default="ES384")
    keygen.add_argument("--kid", required=True)
    keygen.add_argument("--private", required=True, help="where to write the private key PEM")
    keygen.add_argument("--jwks", required=True, help="where to write the public JWKS")
    keygen.set_defaults(func=cmd_keygen)

    assertion = subparsers.add_parser("assertion", help="print a client assertion (vendor)")
    assertion.add_argument("--client-id", required=True)
    assertion.add_argument("--key", required=True, help="private key PEM file")
    assertion.add_argument("--kid", required=True)
    assertion.add_argument("--alg", choices=["ES384", "RS384"], default="ES384")
    assertion.add_argument("--token-url", help="default: BASE_URL/auth/token")
    assertion.add_argument("--practitioner", help="RPPS of the professional acting")
    assertion.add_argument("--profession", help="their national profession code (e.g. 10)")
    assertion.set_defaults(func=cmd_assertion)
