"""The resource service: FHIR interactions as plain async functions over a connection."""
