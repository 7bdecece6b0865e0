"""Wire the configured authenticator into the application at start-up."""

from fastapi import FastAPI

from espace_api.auth.dependency import DenyAll


async def install(app: FastAPI) -> None:
    """Set `app.state.authenticator` from settings. Until configured: deny everybody."""
    app.state.authenticator = DenyAll()
