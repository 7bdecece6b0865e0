"""The application served for real by uvicorn on 127.0.0.1 (a free port), for tests that
drive it with unmodified third-party FHIR clients over TCP.

The server runs `create_app` in a background thread with its own event loop, against the
test database, with BASE_URL = its own address (so Location headers and Bundle links point
back at it). Tokens are real: minted by the live app's built-in issuer (`AuthFactory` on
the live app, run on the server's loop), verified by the live app like any other.
"""

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn

from espace_api.config import Settings
from espace_api.main import create_app
from tests.support.auth import AuthFactory

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving the app in a thread; `call()` runs a coroutine on its loop."""

    def __init__(self, database_url: str, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(database_url=database_url, base_url=self.url, **settings)
        self.app = create_app(self.settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,  # leave the test run's logging alone
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="live-server", daemon=True)
        self.auth = AuthFactory(self.app)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self, timeout: float = 30.0) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("live server failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"live server not started after {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's loop (where its engine lives) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def token(self, kind: str, **kwargs: Any) -> str:
        """A raw access token from the live server's issuer: kind = patient (patient_id=...),
        system, user or operator (same arguments as `AuthFactory`'s methods)."""
        headers: dict[str, str] = self.call(getattr(self.auth, kind)(**kwargs))
        return headers["Authorization"].removeprefix("Bearer ")
