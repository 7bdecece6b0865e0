"""Wire the configured authenticator into the application at start-up."""

from fastapi import FastAPI

from espace_api.auth.services import build


async def install(app: FastAPI) -> None:
    """Set `app.state.auth` (AuthServices) and `app.state.authenticator` from settings.

    Needs `app.state.settings`, `app.state.engine` and `app.state.clock`. With the built-in
    issuer on, a first signing key is created now so that the JWKS is never empty.
    """
    services = build(app.state.settings, app.state.engine, app.state.clock)
    app.state.auth = services
    app.state.authenticator = services.authenticator
    if services.keys is not None:
        await services.keys.current()
