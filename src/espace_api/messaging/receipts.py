"""Read receipts as a message shows them: `received` (the first recipient's reading) and one
`read-receipt` extension per recipient who read it (recipient, received)."""

from collections.abc import Iterable
from datetime import datetime

import orjson

from espace_api.fhir.values import format_instant

RECEIPT_URL = "https://espace-api.org/fhir/StructureDefinition/read-receipt"


def strip(content: dict[str, object]) -> None:
    """Remove what the server owns (receipts) from a client's message."""
    content.pop("received", None)
    ext = content.get("extension")
    if isinstance(ext, list):
        kept = [e for e in ext if not (isinstance(e, dict) and e.get("url") == RECEIPT_URL)]
        if kept:
            content["extension"] = kept
        else:
            content.pop("extension")


def with_receipts(json: str, receipts: Iterable[tuple[str, datetime]]) -> str:
    """The message JSON with its receipts (recipient Reference as JSON text, received)."""
    first: dict[str, datetime] = {}
    for ref, at in receipts:
        first[ref] = min(first.get(ref, at), at)
    if not first:
        return json
    body = orjson.loads(json)
    strip(body)
    ordered = sorted(first.items(), key=lambda item: (item[1], item[0]))
    body["received"] = format_instant(ordered[0][1])
    body["extension"] = [
        *body.get("extension", []),
        *(
            {
                "url": RECEIPT_URL,
                "extension": [
                    {"url": "recipient", "valueReference": orjson.loads(ref)},
                    {"url": "received", "valueDateTime": format_instant(at)},
                ],
            }
            for ref, at in ordered
        ),
    ]
    return orjson.dumps(body).decode()
