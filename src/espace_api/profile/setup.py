"""Wiring the profile package into the application: type behaviours."""

from espace_api.profile import measurements, prevention, writers
from espace_api.profile.behaviour import Agenda, Measurements, ProfileWriters
from espace_api.resources.behaviour import Behaviours


def register(behaviours: Behaviours) -> None:
    """Write rules of the health profile, measurements and agenda."""
    behaviours.register(writers.TYPES, ProfileWriters())
    behaviours.register(["Observation"], Measurements())
    behaviours.register(["Appointment"], Agenda())


def check() -> None:
    """Read and validate the package's data files once (pydantic; an error stops the start)."""
    measurements.table()
    prevention.load()
