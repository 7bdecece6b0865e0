"""What the server implements, declared once: types, interactions, search parameters.

Adding a resource type is one `ResourceType(...)` entry. The CapabilityStatement, the
indexer, the search parser and the routes all read this registry.
"""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel

ParamType = Literal["token", "string", "date", "reference", "uri"]

# In the order the CapabilityStatement lists them.
INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
ALL_INTERACTIONS = frozenset(INTERACTIONS)


@dataclass(frozen=True)
class SearchParam:
    """A search parameter: its name, type and the element paths it indexes."""

    name: str
    type: ParamType
    paths: tuple[str, ...]
    description: str = ""
    targets: tuple[str, ...] = ()  # for references: allowed target types (empty = any)
    # An extension's value instead of `paths`: the chain of extension urls to follow from the
    # resource's root, e.g. (SPACE_STATUS_URL, "status") -> extension[url].extension[url].value[x]
    extension: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceType:
    """A resource type served by the API."""

    name: str
    params: tuple[SearchParam, ...] = ()
    # Paths to the reference that puts an instance in a patient's compartment.
    compartment: tuple[str, ...] = ()
    interactions: frozenset[str] = ALL_INTERACTIONS
    update_create: bool = False  # PUT with a client id may create
    documentation: str = ""
    by_name: dict[str, SearchParam] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({p.name: p for p in self.params})

    @cached_property
    def model(self) -> type[BaseModel]:
        """The fhir.resources R4B model class."""
        model: type[BaseModel] = get_fhir_model_class(self.name)
        return model

    @property
    def in_patient_compartment(self) -> bool:
        return self.name == "Patient" or bool(self.compartment)


def _p(
    name: str,
    type_: ParamType,
    *paths: str,
    targets: tuple[str, ...] = (),
    doc: str = "",
    extension: tuple[str, ...] = (),
) -> SearchParam:
    return SearchParam(name, type_, tuple(paths), doc, targets, extension)


# The Patient extension that shows the state of the person's space (lifecycle/state.py).
SPACE_STATUS_URL = "https://espace-api.org/fhir/StructureDefinition/space-status"

# IHE MHD extensions on List (SubmissionSet, Folder) searched by ITI-66.
MHD_DESIGNATION_TYPE_URL = (
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType"
)
MHD_SOURCE_ID_URL = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId"
# French PDSm: an archived document or submission set (left out of default searches).
PDSM_IS_ARCHIVED_URL = (
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
)
# Subscription: the patient whose space it watches (what puts it in that compartment).
SUBSCRIPTION_PATIENT_URL = "https://espace-api.org/fhir/StructureDefinition/subscription-patient"
IS_ARCHIVED = SearchParam(
    "isArchived",
    "token",
    (),
    "PDSm: archived (true) or not; documents: archived ones are left out unless asked for",
    extension=(PDSM_IS_ARCHIVED_URL,),
)

IDENTIFIER = _p("identifier", "token", "identifier", doc="Business identifier (system|value)")
ACTIVE = _p("active", "token", "active", doc="Whether the record is in active use")
NAME = _p("name", "string", "name", doc="Any part of the name")
FAMILY = _p("family", "string", "name.family")
GIVEN = _p("given", "string", "name.given")

# The health profile, measurements and agenda (issue 12; profile/ holds their write rules).
PATIENT = _p("patient", "reference", "patient", targets=("Patient",))
SUBJECT_PATIENT = _p("patient", "reference", "subject", targets=("Patient",))
CLINICAL_STATUS = _p("clinical-status", "token", "clinicalStatus")
# meta.security with the DMP visibility codes: the patient hides one entry of their profile
# from professionals (MASQUE_PS), read by the access policy as for a document's securityLabel.
META_SECURITY = _p(
    "security-label",
    "token",
    "meta.security",
    doc="Visibility label in meta.security (MASQUE_PS: hidden from professionals)",
)
PROFILE_TYPES = (
    ResourceType(
        "AllergyIntolerance",
        params=(
            IDENTIFIER,
            PATIENT,
            _p("code", "token", "code", "reaction.substance"),
            _p("date", "date", "recordedDate"),
            CLINICAL_STATUS,
            _p("verification-status", "token", "verificationStatus"),
            _p("category", "token", "category"),
            _p("criticality", "token", "criticality"),
            _p("onset", "date", "reaction.onset"),
            META_SECURITY,
        ),
        compartment=("patient",),
        documentation="An allergy or intolerance the patient records (health profile).",
    ),
    ResourceType(
        "MedicationStatement",
        params=(
            IDENTIFIER,
            SUBJECT_PATIENT,
            _p("subject", "reference", "subject"),
            _p("code", "token", "medicationCodeableConcept"),
            _p("effective", "date", "effectiveDateTime", "effectivePeriod"),
            _p("status", "token", "status"),
            _p("category", "token", "category"),
            META_SECURITY,
        ),
        compartment=("subject",),
        documentation="A current or past treatment the patient records (health profile).",
    ),
    ResourceType(
        "Condition",
        params=(
            IDENTIFIER,
            SUBJECT_PATIENT,
            _p("subject", "reference", "subject"),
            _p("code", "token", "code"),
            CLINICAL_STATUS,
            _p("verification-status", "token", "verificationStatus"),
            _p("category", "token", "category"),
            _p("onset-date", "date", "onsetDateTime", "onsetPeriod"),
            _p("abatement-date", "date", "abatementDateTime", "abatementPeriod"),
            _p("recorded-date", "date", "recordedDate"),
            META_SECURITY,
        ),
        compartment=("subject",),
        documentation="A medical history item the patient records (health profile).",
    ),
    ResourceType(
        "FamilyMemberHistory",
        params=(
            IDENTIFIER,
            PATIENT,
            _p("code", "token", "condition.code"),
            _p("date", "date", "date"),
            _p("relationship", "token", "relationship"),
            _p("status", "token", "status"),
            META_SECURITY,
        ),
        compartment=("patient",),
        documentation="A relative's condition, as the patient records it (family history).",
    ),
    ResourceType(
        "Immunization",
        params=(
            IDENTIFIER,
            PATIENT,
            _p("vaccine-code", "token", "vaccineCode"),
            _p("date", "date", "occurrenceDateTime"),
            _p("status", "token", "status"),
            _p("lot-number", "string", "lotNumber"),
            _p("performer", "reference", "performer.actor"),
            META_SECURITY,
        ),
        compartment=("patient",),
        documentation="A vaccination, recorded by the patient or the vaccinating professional.",
    ),
    ResourceType(
        "Observation",
        params=(
            IDENTIFIER,
            SUBJECT_PATIENT,
            _p("subject", "reference", "subject"),
            _p("code", "token", "code"),
            _p("component-code", "token", "component.code"),
            _p("date", "date", "effectiveDateTime", "effectiveInstant", "effectivePeriod"),
            _p("category", "token", "category"),
            _p("status", "token", "status"),
            _p("device", "reference", "device"),
            META_SECURITY,
        ),
        compartment=("subject",),
        documentation="A measurement (vital signs from connected devices, LOINC + UCUM).",
    ),
    ResourceType(
        "Appointment",
        params=(
            IDENTIFIER,
            _p("patient", "reference", "participant.actor", targets=("Patient",)),
            _p("actor", "reference", "participant.actor"),
            _p("practitioner", "reference", "participant.actor", targets=("Practitioner",)),
            _p("date", "date", "start"),
            _p("status", "token", "status"),
            _p("service-type", "token", "serviceType"),
        ),
        compartment=("participant.actor",),
        # Cancelled, never deleted: the agenda keeps it with its status (profile/agenda.py).
        interactions=ALL_INTERACTIONS - {"delete"},
        documentation="An appointment in the patient's agenda (booking services or the patient).",
    ),
)

REGISTRY: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (
        ResourceType(
            "Patient",
            params=(
                IDENTIFIER,
                _p("family", "string", "name.family"),
                _p("given", "string", "name.given"),
                _p("name", "string", "name"),
                _p("birthdate", "date", "birthDate"),
                _p("gender", "token", "gender"),
                _p("active", "token", "active"),
                _p(
                    "space-status",
                    "token",
                    extension=(SPACE_STATUS_URL, "status"),
                    doc="State of the person's space: notified, active, opposed, closed",
                ),
            ),
            documentation="A person holding a health space, known by INS.",
        ),
        ResourceType(
            "DocumentReference",
            params=(
                _p("identifier", "token", "masterIdentifier", "identifier"),
                _p("patient", "reference", "subject", targets=("Patient",)),
                _p("subject", "reference", "subject"),
                _p("type", "token", "type"),
                _p("category", "token", "category"),
                _p("date", "date", "date"),
                _p("status", "token", "status"),
                _p("author", "reference", "author"),
                _p("relatesto", "reference", "relatesTo.target"),
                _p("relation", "token", "relatesTo.code"),
                _p("security-label", "token", "securityLabel"),
                _p("period", "date", "context.period"),
                _p("event", "token", "context.event"),
                _p("facility", "token", "context.facilityType"),
                _p("setting", "token", "context.practiceSetting"),
                _p("related", "reference", "context.related"),
                _p("format", "token", "content.format"),
                _p("contenttype", "token", "content.attachment.contentType"),
                _p("creation", "date", "content.attachment.creation"),
                _p("custodian", "reference", "custodian"),
                IS_ARCHIVED,
                _p(
                    "binary",
                    "reference",
                    "content.attachment.url",
                    targets=("Binary",),
                    doc="The Binary holding the document's content (attachment url)",
                ),
            ),
            compartment=("subject",),
            documentation="Document metadata (IHE MHD).",
        ),
        ResourceType(
            "Binary",
            params=(_p("securitycontext", "reference", "securityContext"),),
            compartment=("securityContext",),
            documentation="Document content.",
        ),
        ResourceType(
            "Consent",
            params=(
                IDENTIFIER,
                _p("patient", "reference", "patient", targets=("Patient",)),
                _p("status", "token", "status"),
                _p("category", "token", "category"),
                _p("scope", "token", "scope"),
                _p("date", "date", "dateTime"),
                _p("actor", "reference", "provision.actor.reference"),
                _p("data", "reference", "provision.data.reference"),
                _p("period", "date", "provision.period"),
                _p("purpose", "token", "provision.purpose"),
            ),
            compartment=("patient",),
            documentation="A patient's privacy choices.",
        ),
        ResourceType(
            "Communication",
            params=(
                IDENTIFIER,
                _p("subject", "reference", "subject"),
                _p("patient", "reference", "subject", targets=("Patient",)),
                _p("sender", "reference", "sender"),
                _p("recipient", "reference", "recipient"),
                _p("sent", "date", "sent"),
                _p("part-of", "reference", "partOf"),
                _p("status", "token", "status"),
                _p("category", "token", "category"),
                _p(
                    "attachment",
                    "reference",
                    "payload.contentAttachment.url",
                    targets=("Binary",),
                    doc="A Binary attached to the message (attachment url)",
                ),
            ),
            compartment=("subject",),
            documentation="Secure messages between a patient and their care team "
            "(docs/messaging.md).",
        ),
        ResourceType(
            "Subscription",
            params=(
                _p("status", "token", "status"),
                _p("type", "token", "channel.type"),
                _p("url", "uri", "channel.endpoint"),
                _p("criteria", "string", "criteria"),
                _p(
                    "patient",
                    "reference",
                    extension=(SUBSCRIPTION_PATIENT_URL,),
                    targets=("Patient",),
                    doc="The patient whose space the Subscription watches",
                ),
            ),
            compartment=("extension.valueReference",),
            documentation="A patient app's rest-hook notification of new messages or "
            "documents (docs/messaging.md).",
        ),
        ResourceType(
            "Practitioner",
            params=(IDENTIFIER, NAME, FAMILY, GIVEN, ACTIVE),
            update_create=True,  # PUT /Practitioner/{rpps-id}: national directory ids
            documentation="A health professional (directory identity, e.g. RPPS).",
        ),
        ResourceType(
            "PractitionerRole",
            params=(
                IDENTIFIER,
                ACTIVE,
                _p("practitioner", "reference", "practitioner", targets=("Practitioner",)),
                _p("organization", "reference", "organization", targets=("Organization",)),
                _p("role", "token", "code"),
                _p("specialty", "token", "specialty"),
            ),
            documentation="A professional's role in an organisation.",
        ),
        ResourceType(
            "Organization",
            params=(
                IDENTIFIER,
                NAME,
                ACTIVE,
                _p("type", "token", "type"),
                _p("partof", "reference", "partOf", targets=("Organization",)),
            ),
            update_create=True,  # PUT /Organization/{finess-id}: national directory ids
            documentation="A care organisation (e.g. identified by FINESS).",
        ),
        ResourceType(
            "RelatedPerson",
            params=(
                IDENTIFIER,
                NAME,
                FAMILY,
                GIVEN,
                ACTIVE,
                _p("patient", "reference", "patient", targets=("Patient",)),
                _p("relationship", "token", "relationship"),
            ),
            compartment=("patient",),
            documentation="A relative or carer the patient names.",
        ),
        ResourceType(
            "List",
            params=(
                IDENTIFIER,
                _p("subject", "reference", "subject"),
                _p("patient", "reference", "subject", targets=("Patient",)),
                _p("code", "token", "code"),
                _p("status", "token", "status"),
                _p("date", "date", "date"),
                _p("source", "reference", "source", doc="Who authored the List"),
                _p(
                    "designationType",
                    "token",
                    extension=(MHD_DESIGNATION_TYPE_URL,),
                    doc="IHE MHD: the SubmissionSet's contentType or the Folder's codeList",
                ),
                _p(
                    "sourceId",
                    "token",
                    extension=(MHD_SOURCE_ID_URL,),
                    doc="IHE MHD: the SubmissionSet's source (sending system) identifier",
                ),
                _p("item", "reference", "entry.item", doc="A resource in the List"),
                IS_ARCHIVED,
            ),
            compartment=("subject",),
            documentation="A curated list: an IHE MHD SubmissionSet or Folder (ITI-66).",
        ),
        *PROFILE_TYPES,
    )
}


def get_type(name: str) -> ResourceType | None:
    """The registered resource type, or None."""
    return REGISTRY.get(name)
