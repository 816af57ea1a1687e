"""BAS: identity provisioning for Norwegian school owners (SIS -> AD, Microsoft 365, itslearning, Feide)."""

__version__ = "0.1.0"
