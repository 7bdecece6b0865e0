"""Audit trail: every read and write of health data, written in the same transaction."""
