"""Run a real ITI-65 deposit in this process and die (os._exit) right after the blob is
stored, while the metadata transaction is still open. Used by test_documents_crash.py.

    python -m tests.support.die_mid_deposit DATABASE_URL BUNDLE_JSON_FILE
"""

import asyncio
import os
import sys
from pathlib import Path

import httpx

from espace_api.config import Settings
from espace_api.main import create_app
from espace_api.storage import repository
from tests.support.auth import AuthFactory
from tests.support.documents import SYSTEM_SCOPES

EXIT_CODE = 17


async def main(url: str, bundle: bytes) -> None:
    app = create_app(Settings(database_url=url, base_url="http://test"))
    async with app.router.lifespan_context(app):
        headers = await AuthFactory(app).system("lgc-crash", SYSTEM_SCOPES)
        write_version = repository.write_version

        async def die_on_document(conn, new, *rest):  # type: ignore[no-untyped-def]
            if new.resource_type == "DocumentReference":
                os._exit(EXIT_CODE)  # the process dies: no commit, no cleanup
            return await write_version(conn, new, *rest)

        repository.write_version = die_on_document  # type: ignore[assignment]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.post(
                "/",
                content=bundle,
                headers={**headers, "Content-Type": "application/fhir+json"},
            )
    sys.exit(1)  # not reached when the deposit got as far as the metadata write


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]).read_bytes()))
