"""Wiring the lifecycle into the application: the Patient behaviour and the routes."""

from espace_api.lifecycle.behaviour import SpaceLifecycle
from espace_api.lifecycle.identity import InsIdentity
from espace_api.resources.behaviour import Behaviours


def register(behaviours: Behaviours) -> None:
    """The space-status extension and the INS of Patient are the lifecycle's."""
    behaviours.register(["Patient"], SpaceLifecycle())
    behaviours.register(["Patient"], InsIdentity())
