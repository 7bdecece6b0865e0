"""The patient space lifecycle: enrolment with opt-out, objection, closure, reopening, purge."""
