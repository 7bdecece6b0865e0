"""Authentication: who is calling, with which SMART scopes."""
