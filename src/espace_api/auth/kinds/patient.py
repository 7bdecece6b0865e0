"""Patient: a person reading their own space, confined to one Patient compartment."""

from espace_api.auth.identity import Identity, ScopeSet
from espace_api.auth.jwt import TokenError
from espace_api.auth.sources import VerifiedToken
from espace_api.fhir.errors import FhirError
from espace_api.storage.auth_repository import AuthRepository


class PatientKind:
    """Built-in tokens name the Patient (`patient` claim); external ones carry an INS that is
    looked up in the Patient identifier index."""

    name = "patient"

    def __init__(self, repo: AuthRepository) -> None:
        self.repo = repo

    async def identity(self, token: VerifiedToken) -> Identity:
        """The patient's Identity; 403 if the INS matches no (or several) Patients."""
        patient_id = token.patient_id
        if patient_id is None:
            if token.ins is None:
                raise TokenError("TOKEN_CLAIMS", "patient token names no patient")
            system, value = token.ins
            found = await self.repo.patients_by_identifier(system, value)
            if len(found) != 1:
                raise FhirError.forbidden(
                    "No single health space matches this identity", "PATIENT_NOT_FOUND"
                )
            patient_id = found[0]
        return Identity(
            kind="patient",
            subject=token.subject,
            scopes=ScopeSet.parse(token.scope),
            client_id=token.client_id,
            patient_id=patient_id,
            token_id=token.token_id,
            purpose=token.purpose,
            grant_id=token.grant_id,
        )
