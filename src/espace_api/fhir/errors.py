"""FHIR errors as data: every refusal becomes an OperationOutcome with a stable code.

`issue.code` is the FHIR IssueType; `issue.details.coding` carries espace-api's own stable
code (listed in README) that a vendor's software can act on.
"""

import re
from typing import Any

ERROR_SYSTEM = "https://espace-api.org/fhir/CodeSystem/error"


class FhirError(Exception):
    """An error that the REST layer renders as an OperationOutcome."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        issue_type: str = "processing",
        expression: list[str] | None = None,
        headers: dict[str, str] | None = None,
        extra_issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issue_type = issue_type
        self.expression = expression
        self.headers = headers or {}
        self.extra_issues = extra_issues or []
        # (method, url) of the Bundle entry that was refused, for the refusal audit.
        self.entry_target: tuple[str, str] | None = None

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource for this error."""
        return operation_outcome(
            self.issue_type, self.message, self.code, self.expression, extra=self.extra_issues
        )

    # Constructors for the common cases keep codes consistent across modules.
    @classmethod
    def bad_request(cls, message: str, code: str = "BAD_REQUEST", **kw: Any) -> "FhirError":
        return cls(400, code, message, issue_type=kw.pop("issue_type", "invalid"), **kw)

    @classmethod
    def unauthorized(cls, message: str, error: str = "invalid_token") -> "FhirError":
        return cls(
            401,
            "UNAUTHORIZED",
            message,
            issue_type="login",
            headers={"WWW-Authenticate": f'Bearer error="{error}"'},
        )

    @classmethod
    def forbidden(
        cls, message: str, code: str = "FORBIDDEN", headers: dict[str, str] | None = None
    ) -> "FhirError":
        return cls(403, code, message, issue_type="forbidden", headers=headers)

    @classmethod
    def not_found(cls, message: str, code: str = "NOT_FOUND") -> "FhirError":
        return cls(404, code, message, issue_type="not-found")

    @classmethod
    def gone(cls, message: str) -> "FhirError":
        return cls(410, "GONE", message, issue_type="deleted")

    @classmethod
    def conflict(cls, message: str, code: str = "CONFLICT") -> "FhirError":
        return cls(409, code, message, issue_type="conflict")

    @classmethod
    def precondition(cls, message: str, code: str = "PRECONDITION_FAILED") -> "FhirError":
        return cls(412, code, message, issue_type="conflict")

    @classmethod
    def unprocessable(
        cls, message: str, code: str = "UNPROCESSABLE", expression: list[str] | None = None
    ) -> "FhirError":
        return cls(422, code, message, issue_type="processing", expression=expression)


# Whitespace a FHIR string may not hold ([ \r\n\t\S]+): messages echo the client's input.
_NOT_FHIR_WHITESPACE = re.compile(r"[^\S \r\n\t]")


def _fhir_string(text: str) -> str:
    """`text` as a valid FHIR string: other whitespace (form feed, vertical tab...) as spaces."""
    return _NOT_FHIR_WHITESPACE.sub(" ", text) or "error"


def operation_outcome(
    issue_type: str,
    message: str,
    code: str | None = None,
    expression: list[str] | None = None,
    severity: str = "error",
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build an OperationOutcome dict with one issue (plus optional extra issues)."""
    message = _fhir_string(message)
    issue: dict[str, Any] = {"severity": severity, "code": issue_type, "diagnostics": message}
    if code:
        issue["details"] = {"coding": [{"system": ERROR_SYSTEM, "code": code}], "text": message}
    if expression:
        issue["expression"] = expression
    extras = [
        {**e, "diagnostics": _fhir_string(e["diagnostics"])}
        if isinstance(e.get("diagnostics"), str)
        else e
        for e in extra or []
    ]
    return {"resourceType": "OperationOutcome", "issue": [issue, *extras]}
