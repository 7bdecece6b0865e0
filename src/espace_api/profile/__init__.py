"""The rest of a person's space (issue 12): health profile, measurements, agenda, reminders."""
