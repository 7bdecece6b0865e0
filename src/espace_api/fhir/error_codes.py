"""Every stable error code a refusal carries in `OperationOutcome.issue.details.coding`
(system `fhir.errors.ERROR_SYSTEM`), with the statuses it comes with and what it means.

The OpenAPI document publishes this catalogue as an enumeration a client can switch on
(`ErrorCode`) and lists, under each response status, the codes it may carry.
tests/test_openapi_document.py fails when a code raised in src/ is missing here.
"""

from typing import NamedTuple


class ErrorCode(NamedTuple):
    statuses: tuple[int, ...]
    meaning: str


_BAD = "malformed request or resource (`expression` names the element)"
_TOKEN = "missing or invalid token (`WWW-Authenticate: Bearer error=...`; see docs/auth.md)"
_PRIVACY = "a privacy rule refuses this caller (docs/privacy.md)"
_PATCH = "a patch cannot apply"
_MHD = "a deposited document breaks an IHE MHD / PDSm rule (docs/documents.md)"
_ENROL = "an enrolment NDJSON line was refused (per-line report of `$enrol`)"

ERROR_CODES: dict[str, ErrorCode] = {
    # 400
    "BAD_REQUEST": ErrorCode((400,), _BAD),
    "INVALID_JSON": ErrorCode((400,), "the body is not JSON"),
    "INVALID_RESOURCE": ErrorCode((400, 422), "the resource fails FHIR validation"),
    "WRONG_RESOURCE_TYPE": ErrorCode((400,), "resourceType does not match the endpoint"),
    "ID_MISMATCH": ErrorCode((400,), "the body's id differs from the URL's"),
    "INVALID_SEARCH": ErrorCode((400,), "a search parameter's value cannot be parsed"),
    "UNKNOWN_PARAMETER": ErrorCode((400,), "unknown search parameter (Prefer: handling=strict)"),
    "INVALID_PARAMETER": ErrorCode((400,), "an operation parameter is invalid"),
    "INVALID_BUNDLE": ErrorCode((400,), "a batch/transaction Bundle is malformed"),
    "INVALID_ETAG": ErrorCode((400,), 'If-Match is not a weak ETag W/"n"'),
    "INVALID_PATCH": ErrorCode((400, 422), "the patch document is malformed"),
    "UPDATE_CREATE_NOT_ALLOWED": ErrorCode((400,), "PUT may not create this type"),
    "SECURITY_CONTEXT_REQUIRED": ErrorCode((400,), "raw Binary needs X-Security-Context"),
    "BTG_REASON_REQUIRED": ErrorCode((400,), "break-the-glass needs a reason"),
    "INVALID_CLIENT": ErrorCode((400,), "client registration refused"),
    "INVALID_CONTENT_KEY": ErrorCode((400,), "a blob key is malformed"),
    # 401
    "UNAUTHORIZED": ErrorCode((401,), _TOKEN),
    "TOKEN_MISSING": ErrorCode((401,), _TOKEN),
    "TOKEN_MALFORMED": ErrorCode((401,), _TOKEN),
    "TOKEN_ALGORITHM": ErrorCode((401,), _TOKEN),
    "TOKEN_KID": ErrorCode((401,), _TOKEN),
    "TOKEN_KEY": ErrorCode((401,), _TOKEN),
    "TOKEN_SIGNATURE": ErrorCode((401,), _TOKEN),
    "TOKEN_ISSUER": ErrorCode((401,), _TOKEN),
    "TOKEN_AUDIENCE": ErrorCode((401,), _TOKEN),
    "TOKEN_EXPIRED": ErrorCode((401,), _TOKEN),
    "TOKEN_NOT_YET_VALID": ErrorCode((401,), _TOKEN),
    "TOKEN_LIFETIME": ErrorCode((401,), _TOKEN),
    "TOKEN_CLAIMS": ErrorCode((401,), _TOKEN),
    "ASSERTION_CLAIMS": ErrorCode((401,), "a client assertion's claims are wrong"),
    "ASSERTION_REPLAY": ErrorCode((401,), "a client assertion's jti was already used"),
    "CLIENT_UNKNOWN": ErrorCode((401,), "the client assertion names no registered client"),
    # 403
    "FORBIDDEN": ErrorCode((403,), "the token does not grant this"),
    "INSUFFICIENT_SCOPE": ErrorCode((403,), "no granted scope covers this interaction"),
    "OTHER_PATIENT": ErrorCode((403,), "a patient token writing in another space"),
    "FORBIDDEN_TYPE": ErrorCode((403,), "this kind of caller never handles this type"),
    "PATIENT_NOT_FOUND": ErrorCode((403,), "the token's patient is unknown"),
    "OPERATOR_ONLY": ErrorCode((403,), "operator rights are required"),
    "PATIENT_LOOKUP_ONLY": ErrorCode((403,), "software finds a Patient by exact INS only"),
    "INS_READ_ONLY": ErrorCode((403,), "only an operator changes an INS"),
    "ENROLMENT_OPERATOR_ONLY": ErrorCode((403,), "creating a Patient is an operator's act"),
    "OTHER_ACTOR": ErrorCode((403,), _PRIVACY),
    "CONSENT_KIND_NOT_ALLOWED": ErrorCode((403,), _PRIVACY),
    "LABEL_CHANGE_NOT_ALLOWED": ErrorCode((403,), _PRIVACY),
    "BTG_NOT_ALLOWED": ErrorCode((403,), _PRIVACY),
    "BLOCKED": ErrorCode((403,), _PRIVACY),
    "BTG_OPPOSED": ErrorCode((403,), _PRIVACY),
    # 404
    "NOT_FOUND": ErrorCode((404,), "no such resource, or not visible to this caller"),
    "CLIENT_NOT_FOUND": ErrorCode((404,), "unknown client id"),
    "CONTENT_NOT_FOUND": ErrorCode((404,), "document content is missing"),
    # 405, 406
    "METHOD_NOT_ALLOWED": ErrorCode((405,), "interaction not supported on this path"),
    "NOT_ACCEPTABLE": ErrorCode((406,), "Accept or _format asks for a format not produced"),
    # 409
    "CONFLICT": ErrorCode((409,), "a concurrent change conflicts: retry"),
    "ID_CONFLICT": ErrorCode((409,), "a conditional update's id does not match"),
    "INS_CONFLICT": ErrorCode((409,), "another Patient already holds this INS"),
    "DUPLICATE_DOCUMENT": ErrorCode((409,), "the masterIdentifier is taken by other content"),
    "DOCUMENT_NOT_CURRENT": ErrorCode((409,), "the superseded document is not current"),
    "INVALID_TRANSITION": ErrorCode((409,), "space state change not allowed from this state"),
    "CONTENT_REFERENCED": ErrorCode((409,), "document content is still referenced"),
    # 410, 412, 413, 415, 416
    "GONE": ErrorCode((410,), "the resource was deleted"),
    "PRECONDITION_FAILED": ErrorCode((412,), "If-Match does not match"),
    "VERSION_CONFLICT": ErrorCode((412,), "If-Match does not match the current version"),
    "AMBIGUOUS_MATCH": ErrorCode((412,), "a conditional interaction matches several resources"),
    "AMBIGUOUS_REFERENCE": ErrorCode((412,), "a conditional reference matches several"),
    "BODY_TOO_LARGE": ErrorCode((413,), "body above MAX_BODY_BYTES"),
    "TOO_MANY_ENTRIES": ErrorCode((413,), "a Bundle above MAX_BUNDLE_ENTRIES entries"),
    "CONTENT_TOO_LARGE": ErrorCode((413,), "document content above the size limit"),
    "UNSUPPORTED_MEDIA_TYPE": ErrorCode((415,), "wrong Content-Type"),
    "RANGE_NOT_SATISFIABLE": ErrorCode((416,), "a Range outside the document"),
    # 422
    "UNPROCESSABLE": ErrorCode((422,), "a business rule refused the content"),
    "REFERENCE_NOT_FOUND": ErrorCode((422,), "a reference points at nothing visible"),
    "INVALID_REFERENCE": ErrorCode((422,), "a reference is malformed or of the wrong type"),
    "INVALID_PATCH_PATH": ErrorCode((422,), _PATCH),
    "UNSUPPORTED_PATH": ErrorCode((422,), _PATCH),
    "PATCH_TEST_FAILED": ErrorCode((422,), _PATCH),
    "INVALID_CONSENT": ErrorCode((422,), "a Consent's provision does not fit its kind"),
    "CONTENT_TYPE_NOT_ALLOWED": ErrorCode((415, 422), _MHD),
    "CONTENT_TYPE_MISMATCH": ErrorCode((422,), _MHD),
    "MISSING_METADATA": ErrorCode((422,), _MHD),
    "SIZE_MISMATCH": ErrorCode((422,), _MHD),
    "HASH_MISMATCH": ErrorCode((422,), _MHD),
    "REPLACES_OTHER_PATIENT": ErrorCode((422,), _MHD),
    "BINARY_PATIENT_REQUIRED": ErrorCode((422,), _MHD),
    "BINARY_OTHER_PATIENT": ErrorCode((422,), _MHD),
    "ATTACHMENT_URL_NOT_SUPPORTED": ErrorCode((422,), _MHD),
    "SUPERSEDE_CHANGES_OTHER": ErrorCode((422,), "superseding also changes other elements"),
    "PATIENT_SPACE_CLOSED": ErrorCode((422,), "the patient's space is closed"),
    "PATIENT_OPPOSED": ErrorCode((422,), "the patient opposed the creation of their space"),
    "PATIENT_UNKNOWN": ErrorCode((422,), "no Patient has this INS or id"),
    # Per-line codes of the $enrol NDJSON report.
    "INS_REQUIRED": ErrorCode((200,), _ENROL),
    "INVALID_INS": ErrorCode((200,), _ENROL),
    "DUPLICATE_INS": ErrorCode((200,), _ENROL),
    "LINE_TOO_LONG": ErrorCode((200,), _ENROL),
    # 429, 500, 503
    "RATE_LIMITED": ErrorCode((429,), "a machine client above its rate (see Retry-After)"),
    "INTERNAL_ERROR": ErrorCode((500,), "a bug; nothing of it reaches the client but this"),
    "DRAINING": ErrorCode((503,), "the instance is shutting down: retry"),
    "REQUEST_TIMEOUT": ErrorCode((503,), "the request ran too long and was stopped"),
    # Messaging and notifications (docs/messaging.md).
    "SENDER_NOT_CALLER": ErrorCode((403,), "a message's sender is not the caller"),
    "MESSAGE_IMMUTABLE": ErrorCode((403,), "a sent message is not changed"),
    "SUBSCRIPTION_PATIENT_ONLY": ErrorCode((403,), "Subscriptions are the patient's own"),
    "INVALID_PARTICIPANT": ErrorCode((422,), "a sender or recipient cannot take part"),
    "PATIENT_NOT_PARTICIPANT": ErrorCode((422,), "the message's patient is not a participant"),
    "ATTACHMENT_DATA_NOT_SUPPORTED": ErrorCode((422,), "attachments go to /Binary first"),
    "UNSUPPORTED_CRITERIA": ErrorCode((422,), "Subscription.criteria is not supported"),
    "UNSUPPORTED_CHANNEL": ErrorCode((422,), "Subscription.channel is not a rest-hook"),
    "INVALID_ENDPOINT": ErrorCode((422,), "Subscription.channel.endpoint is refused"),
    "PAYLOAD_NOT_ALLOWED": ErrorCode((422,), "notifications carry no payload"),
    "INVALID_STATUS": ErrorCode((422,), "Subscription.status is not one a client sets"),
    # Health profile and measurements (docs/profile.md).
    "WRITER_NOT_ALLOWED": ErrorCode((403,), "this kind of caller does not write this type"),
    "SERVICE_NOT_CONNECTED": ErrorCode((403,), "the patient did not connect this service"),
    "DUPLICATE_MEASUREMENT": ErrorCode((409,), "a concurrent write holds this measurement"),
    "INVALID_UNIT": ErrorCode((422,), "the UCUM unit does not fit the LOINC code"),
    "UNSUPPORTED_CODE": ErrorCode((422,), "the Observation's LOINC code is not supported"),
    "MISSING_VALUE": ErrorCode((422,), "the Observation has no usable value"),
    # SMART App Launch (docs/auth.md): shown on the sign-in pages or as OAuth errors.
    "INVALID_REQUEST": ErrorCode((400,), "an authorize parameter is missing or repeated"),
    "UNKNOWN_CLIENT": ErrorCode((400,), "client_id is not a registered app"),
    "INVALID_REDIRECT_URI": ErrorCode((400,), "redirect_uri is not registered (exact match)"),
    "STATE_MISMATCH": ErrorCode((400,), "unknown, expired or reused sign-in state"),
    "CONSENT_EXPIRED": ErrorCode((400,), "the consent form expired or was answered"),
    "TOKEN_REVOKED": ErrorCode((401,), "the app's grant was revoked"),
    "NOT_THE_PATIENT": ErrorCode((403,), "only the patient revokes an app's access"),
    "NOT_AN_APP_GRANT": ErrorCode((422,), "this Consent is not an app's grant"),
    # Content encryption (docs/encryption.md) and database availability (docs/operations.md).
    "CONTENT_ERASED": ErrorCode((404,), "the content's data key was destroyed by a purge"),
    "CONTENT_INTEGRITY_FAILED": ErrorCode((409,), "stored content failed its authentication"),
    "CONTENT_KEY_UNAVAILABLE": ErrorCode((503,), "the content's data key cannot be unwrapped now"),
    "PATIENT_CHANGE": ErrorCode((422,), "on Citus a resource cannot move to another space"),
    "NOT_MIGRATED": ErrorCode((503,), "/readyz: the database schema is not at this version's head"),
    "DATABASE_UNAVAILABLE": ErrorCode((503,), "the database cannot be reached now: retry"),
}


def codes_for(status: int) -> list[str]:
    """The codes a response of this status may carry, in catalogue order."""
    return [code for code, entry in ERROR_CODES.items() if status in entry.statuses]
