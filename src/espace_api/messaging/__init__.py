"""Secure messaging (issue 11): Communication between a patient and their professionals,
conversations and read receipts, and rest-hook Subscriptions told of new messages and
documents by a background worker. See docs/messaging.md."""
