"""Database access: engine, schema, embedded server. All SQL lives under `storage/`."""
