"""espace-api: FHIR R4 REST service for a patient-controlled health-document vault."""

__version__ = "0.1.0"
