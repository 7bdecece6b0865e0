"""FHIR R4 mechanics: registry, validation, indexing, search, bundles, errors."""
