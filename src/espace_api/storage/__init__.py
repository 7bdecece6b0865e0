"""The SQL layer: every query of the database lives in this package."""
