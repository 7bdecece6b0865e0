"""What a patient's Subscription may be (FHIR R4 Subscription, rest-hook channel).

- `criteria`: `Communication?patient=<id>` (new messages) or `DocumentReference?patient=<id>`
  (new documents), the id being the Subscription's own patient (`patient=Patient/<id>` and
  `subject=Patient/<id>` are accepted too). 422 `UNSUPPORTED_CRITERIA` otherwise.
- `channel.type` `rest-hook` (422 `UNSUPPORTED_CHANNEL`), `channel.endpoint` an https URL
  (http only when `SUBSCRIPTION_ALLOW_HTTP`), `channel.header` strings `Name: value`
  (422 `INVALID_ENDPOINT`).
- No `channel.payload` (422 `PAYLOAD_NOT_ALLOWED`): a notification says "something new" and
  nothing else, so it carries no health data; the app then reads with its own token.
- `status`: `requested` (or `active`) is stored `active`; `off` stops notifications; `error`
  is the server's (set by the worker after the last failed attempt).
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from espace_api.config import Settings
from espace_api.fhir.errors import FhirError

TOPICS = ("Communication", "DocumentReference")


@dataclass(frozen=True)
class Channel:
    """What the notifier needs of a Subscription."""

    topic: str
    endpoint: str
    headers: tuple[str, ...]
    active: bool


def _bad(code: str, text: str, where: str) -> FhirError:
    return FhirError.unprocessable(text, code, [where])


def topic_of(criteria: Any, patient_id: str) -> str:
    """The resource type the criteria watches in the patient's space."""
    text = criteria if isinstance(criteria, str) else ""
    topic, _, query = text.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    mine = {patient_id, f"Patient/{patient_id}"}
    if (
        topic not in TOPICS
        or not params
        or any(k not in ("patient", "subject") or v not in mine for k, v in params)
    ):
        raise _bad(
            "UNSUPPORTED_CRITERIA",
            f"Subscription.criteria must be Communication?patient={patient_id} or "
            f"DocumentReference?patient={patient_id}",
            "Subscription.criteria",
        )
    return topic


def check(content: dict[str, Any], patient_id: str, settings: Settings) -> Channel:
    """Check a client's Subscription; set its status; what the notifier keeps of it."""
    topic = topic_of(content.get("criteria"), patient_id)
    channel = content.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise _bad(
            "UNSUPPORTED_CHANNEL", "Only the rest-hook channel is offered", "Subscription.channel"
        )
    if "payload" in channel:
        raise _bad(
            "PAYLOAD_NOT_ALLOWED",
            "Notifications carry no content (no health data leaves with them): leave "
            "channel.payload out; the app reads what is new with its own token",
            "Subscription.channel.payload",
        )
    endpoint = channel.get("endpoint")
    url = urlsplit(endpoint) if isinstance(endpoint, str) else None
    schemes = ("https", "http") if settings.subscription_allow_http else ("https",)
    if url is None or url.scheme not in schemes or not url.hostname:
        raise _bad(
            "INVALID_ENDPOINT",
            f"Subscription.channel.endpoint must be an absolute {' or '.join(schemes)} URL",
            "Subscription.channel.endpoint",
        )
    headers = channel.get("header") or []
    if any(not isinstance(h, str) or ":" not in h or "\n" in h or "\r" in h for h in headers):
        raise _bad(
            "INVALID_ENDPOINT",
            "Subscription.channel.header items are 'Name: value' strings",
            "Subscription.channel.header",
        )
    status = content.get("status")
    if status not in ("requested", "active", "off"):
        raise _bad(
            "INVALID_STATUS",
            "Subscription.status is requested (or active) to receive notifications, or off",
            "Subscription.status",
        )
    active = status != "off"
    content["status"] = "active" if active else "off"
    content.pop("error", None)
    assert isinstance(endpoint, str)
    return Channel(topic, endpoint, tuple(headers), active)
