"""Wiring the profile package into the application: type behaviours."""

from espace_api.profile import writers
from espace_api.profile.behaviour import ProfileWriters
from espace_api.resources.behaviour import Behaviours


def register(behaviours: Behaviours) -> None:
    """Write rules of the health profile, measurements and agenda."""
    behaviours.register(writers.TYPES, ProfileWriters())
