"""Codes the access policy reads: document visibility labels and the kinds of Consent.

Visibility labels are the French DMP/PDSm codes (ANS terminology TRE_A07), carried in
`DocumentReference.securityLabel` and indexed with the `security-label` search parameter.
Consent kinds are espace-api's own codes in `Consent.category`.
"""

from typing import Any

VISIBILITY_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)
MASQUE_PS = "MASQUE_PS"  # hidden from professionals (the patient still sees it)
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"  # not yet shown to the patient
INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"  # hidden from a minor's
# legal representatives
VISIBILITY_CODES = frozenset({MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX})
VISIBILITY_DISPLAY = {
    MASQUE_PS: "Masqué aux professionnels de santé",
    INVISIBLE_PATIENT: "Non visible par le patient",
    INVISIBLE_REPRESENTANTS_LEGAUX: "Non visible par les représentants légaux du patient",
}

# RelatedPerson.relationship codes (v3-RoleCode) that make a person a minor's legal
# representative: guardian, parent, mother, father.
ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
LEGAL_REPRESENTATIVE_CODES = frozenset({"GUARD", "PRN", "MTH", "FTH"})
AGE_OF_MAJORITY = 18

CONSENT_KIND_SYSTEM = "https://espace-api.org/fhir/CodeSystem/consent-kind"
# Consent.scope of the patient's privacy choices, and the provision.actor role of whoever a
# server-written Consent lets in (break-the-glass, an app's grant).
PRIVACY_SCOPE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
    ]
}
RECIPIENT_ROLE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
    ]
}
CARE_RELATIONSHIP = "care-relationship"  # a professional's access authorisation
MASK = "mask"  # hide documents (listed in provision.data, or all) from professionals
BLOCK = "block"  # block a professional or organisation from the whole space
DEFAULT_VISIBILITY = "default-visibility"  # provision.type deny: new deposits start masked
OPPOSE_BTG = "oppose-btg"  # the patient opposes break-the-glass access
OPPOSE_SAMU = "oppose-samu"  # the patient opposes access by the emergency call-centre doctor
BREAK_THE_GLASS = "break-the-glass"  # an emergency access, recorded by the server
APP_GRANT = "app-grant"  # a third-party app's authorization
# An approved service (machine client: telemonitoring, connected device, booking) the patient
# connected: it may add their measurements and appointments.
CONNECTED_SERVICE = "connected-service"
CONSENT_KINDS = frozenset(
    {
        CARE_RELATIONSHIP,
        MASK,
        BLOCK,
        DEFAULT_VISIBILITY,
        OPPOSE_BTG,
        OPPOSE_SAMU,
        BREAK_THE_GLASS,
        APP_GRANT,
        CONNECTED_SERVICE,
    }
)
# access_rules.kind of a mask Consent without provision.data: every document is hidden.
MASK_ALL = "mask-all"
DEFAULT_MASKED = "default-masked"


def visibility_codes(content: dict[str, Any]) -> set[str]:
    """The visibility codes in a resource's securityLabel."""
    return {
        coding.get("code")
        for label in content.get("securityLabel") or []
        for coding in label.get("coding") or []
        if coding.get("system") == VISIBILITY_SYSTEM and coding.get("code") in VISIBILITY_CODES
    }


def set_visibility(content: dict[str, Any], code: str, on: bool) -> bool:
    """Add or remove one visibility label; True when the content changed."""
    labels = content.get("securityLabel") or []
    present = code in visibility_codes(content)
    if on and not present:
        coding = {"system": VISIBILITY_SYSTEM, "code": code, "display": VISIBILITY_DISPLAY[code]}
        content["securityLabel"] = [*labels, {"coding": [coding]}]
        return True
    if not on and present:
        kept = []
        for label in labels:
            codings = [
                c
                for c in label.get("coding") or []
                if not (c.get("system") == VISIBILITY_SYSTEM and c.get("code") == code)
            ]
            if codings or not label.get("coding"):
                kept.append({**label, "coding": codings} if label.get("coding") else label)
        content["securityLabel"] = kept
        if not kept:
            del content["securityLabel"]
        return True
    return False


def consent_kind(content: dict[str, Any]) -> str | None:
    """The espace-api kind of a Consent (from its category), or None."""
    for category in content.get("category") or []:
        for coding in category.get("coding") or []:
            if coding.get("system") == CONSENT_KIND_SYSTEM:
                return str(coding.get("code"))
    return None
