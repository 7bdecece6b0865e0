"""The patient's privacy choices (Consent), break-the-glass, $everything and $explain."""
