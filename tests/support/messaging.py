"""Helpers for the messaging tests: messages, a hospital and its professionals, a real HTTP
receiver for rest-hook notifications."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.auth import AuthFactory
from tests.support.documents import pdf

MESSAGING_SCOPES = "system/Communication.crs system/Binary.r system/Patient.s"
PRO_MESSAGING = "user/*.rs user/Communication.c user/Consent.cud"


def message(
    patient_id: str, sender: str, recipients: list[str], text: str = "Bonjour", **extra: Any
) -> dict[str, Any]:
    """A Communication about `patient_id` from `sender` to `recipients` (references)."""
    return {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "sender": {"reference": sender},
        "recipient": [{"reference": r} for r in recipients],
        "payload": [{"contentString": text}],
        **extra,
    }


@dataclass
class Hospital:
    """An organisation (FINESS), its messaging software and one of its doctors."""

    finess: str
    software: dict[str, str]
    doctor: dict[str, str]
    rpps: str

    @property
    def ref(self) -> str:
        return f"Organization/finess-{self.finess}"


async def hospital(auth: AuthFactory) -> Hospital:
    """A new hospital: a machine client with the messaging scope, and a doctor there."""
    finess = str(uuid.uuid4().int)[:9]
    rpps = str(uuid.uuid4().int)[:11]
    software = await auth.system(
        f"his-{finess}", scopes=MESSAGING_SCOPES, organization=f"finess:{finess}"
    )
    doctor = await auth.user(f"rpps-{rpps}", scopes=PRO_MESSAGING, organization=f"finess:{finess}")
    return Hospital(finess, software, doctor, rpps)


async def post_pdf(client: Any, headers: dict[str, str], patient_id: str) -> tuple[str, bytes]:
    """POST /Binary with raw PDF bytes into the patient's space: (id, bytes)."""
    data = pdf()
    r = await client.post(
        "/Binary",
        content=data,
        headers={
            **headers,
            "Content-Type": "application/pdf",
            "X-Security-Context": f"Patient/{patient_id}",
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], data


def thread_counts(bundle: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """$threads entries as (thread id, latest message id, messages, unread)."""
    out = []
    for entry in bundle.get("entry", []):
        (ext,) = entry["extension"]
        values = {e["url"]: e for e in ext["extension"]}
        thread = values["thread"]["valueReference"]["reference"].removeprefix("Communication/")
        out.append(
            (
                thread,
                entry["resource"]["id"],
                values["messages"]["valueUnsignedInt"],
                values["unread"]["valueUnsignedInt"],
            )
        )
    return out


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 (an ephemeral port) recording what it is sent and
    answering `status` (a rest-hook endpoint of a patient's app)."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: asyncio.Server | None = None
    # Run while a request is being answered (e.g. a new event arriving during a delivery).
    during: Callable[[], Awaitable[None]] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def start(self) -> "Receiver":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        if self.during is not None:
            await self.during()
        reason = "OK" if self.status < 400 else "Error"
        writer.write(
            f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
