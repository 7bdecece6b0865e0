"""Application factory."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES

from espace_api import __version__, logs
from espace_api.access import policy
from espace_api.api import errors, fhir_routes
from espace_api.api.access_log import AccessLog
from espace_api.api.fast_path import FastPath
from espace_api.api.limits import Deadline, Draining, RateLimiter, install_drain
from espace_api.audit import routes as audit_routes
from espace_api.auth import routes as auth_routes
from espace_api.auth import setup as auth_setup
from espace_api.clock import Clock
from espace_api.config import Settings, get_settings
from espace_api.db import migrate
from espace_api.db.embedded import ensure_database_url
from espace_api.db.engine import make_engine
from espace_api.documents import routes as documents_routes
from espace_api.documents import setup as documents_setup
from espace_api.fhir.errors import operation_outcome
from espace_api.lifecycle import routes as lifecycle_routes
from espace_api.lifecycle import setup as lifecycle_setup
from espace_api.messaging import routes as messaging_routes
from espace_api.messaging import setup as messaging_setup
from espace_api.metrics import counters
from espace_api.metrics import routes as metrics_routes
from espace_api.openapi import document as openapi_document
from espace_api.privacy import routes as privacy_routes
from espace_api.privacy import setup as privacy_setup
from espace_api.profile import routes as profile_routes
from espace_api.profile import setup as profile_setup
from espace_api.resources.behaviour import Behaviours
from espace_api.smart import routes as smart_routes
from espace_api.smart import setup as smart_setup

DOCUMENT_TYPES = (
    "application/pdf",
    "image/*",
    "text/plain",
    "application/xml",
    "application/octet-stream",
)

DESCRIPTION = """FHIR R4 REST API of a patient-controlled health-document vault.

Content type `application/fhir+json`. Every route except `/metadata`, `/.well-known/*`,
`/auth/token`, the SMART App Launch pages (`/auth/authorize`, `/auth/callback`,
`/auth/consent`), health probes and docs needs a SMART on FHIR bearer token.
Errors are `OperationOutcome` resources whose `issue.details.coding.code` is a stable code.
"""


def behaviours() -> Behaviours:
    """Type rules: each package registers its behaviours; the service knows no type by name."""
    registry = Behaviours()
    documents_setup.register(registry)
    privacy_setup.register(registry)
    lifecycle_setup.register(registry)
    messaging_setup.register(registry)
    smart_setup.register(registry)
    profile_setup.register(registry)
    return registry


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the application; the database engine is created at start-up."""
    settings = settings or get_settings()
    clock = clock or Clock()
    policy.settings_from(settings)  # a bad profession matrix stops the start (MatrixError)
    profile_setup.check()  # a bad measurements or reminders table stops the start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = await asyncio.to_thread(ensure_database_url, settings.database_url, settings.data_dir)
        app.state.settings = settings.model_copy(update={"database_url": url})
        app.state.engine = make_engine(app.state.settings)
        app.state.clock = clock
        app.state.started = clock.now()
        await auth_setup.install(app)
        smart_setup.start(app)
        await documents_setup.start(app)
        await messaging_setup.start(app)
        counters.watch_pool(app.state.engine)
        app.state.draining = False
        install_drain(app.state, settings.drain_seconds)
        # What start-up built (models, registry, tables, caches) lives as long as the process:
        # out of the collector's reach, a full collection no longer walks it (a read's p99
        # carried 80-200 ms pauses of generation-2 collections before; issue 14).
        gc.freeze()
        try:
            yield
        finally:
            await messaging_setup.stop(app)
            await documents_setup.stop(app)
            await app.state.engine.dispose()

    app = FastAPI(
        title="espace-api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # No OpenTelemetry here (metrics are Prometheus, api/access_log.py): without this,
        # FastAPI asks OpenTelemetry for its providers on every request (2 % of a read).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.behaviours = behaviours()
    app.state.limiter = RateLimiter(settings.machine_rate_per_second, settings.machine_rate_burst)
    # Only when the client sends Accept-Encoding: gzip; FHIR JSON/XML only: document bytes
    # keep their Content-Length and Range semantics.
    # FastPath innermost: gzip, the deadline, the drain, the 500 guard and the access log
    # wrap the hot interactions as they wrap every route.
    app.add_middleware(FastPath)
    app.add_middleware(
        GZipMiddleware,
        minimum_size=1000,
        compresslevel=5,
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, *DOCUMENT_TYPES),
    )
    app.add_middleware(Deadline, seconds=settings.request_timeout_seconds)
    app.add_middleware(Draining)
    errors.install(app)

    @app.get("/healthz", tags=["ops"], summary="liveness probe")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    expected = migrate.heads()

    @app.get("/readyz", tags=["ops"], summary="readiness probe (database reachable, at head)")
    async def readyz() -> Response:
        async with app.state.engine.connect() as conn:
            recorded = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        if frozenset(r[0] for r in recorded) != expected:
            outcome = operation_outcome(
                "transient", "The database schema is not at this version's head", "NOT_MIGRATED"
            )
            return errors.outcome_response(503, outcome, {"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    app.add_middleware(AccessLog)
    app.include_router(auth_routes.router)
    app.include_router(documents_routes.router)  # Binary content routes before generic ones
    app.include_router(audit_routes.router)
    app.include_router(privacy_routes.router)
    app.include_router(smart_routes.router)
    app.include_router(lifecycle_routes.router)
    app.include_router(messaging_routes.router)  # $threads before /Communication/{id}
    app.include_router(profile_routes.router)  # Observation/$lastn before Observation/{id}
    app.include_router(metrics_routes.router)
    app.include_router(fhir_routes.router)
    app.openapi = lambda: openapi_document.build(app)  # type: ignore[method-assign]
    return app


def create_worker_app() -> FastAPI:
    """The application of one worker process of `espace-api serve --workers N` and of the
    container: settings and logging from the environment, as the command sets them."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
