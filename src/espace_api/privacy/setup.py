"""Wiring the privacy package into the application: type behaviours and operations."""

from espace_api.privacy.behaviour import ConsentRules, DocumentVisibility, PrivacySettings
from espace_api.resources.behaviour import Behaviours


def register(behaviours: Behaviours) -> None:
    """The privacy rules for Consent, DocumentReference and Patient."""
    behaviours.register(["Consent"], ConsentRules())
    behaviours.register(["DocumentReference"], DocumentVisibility())
    behaviours.register(["Patient"], PrivacySettings())
