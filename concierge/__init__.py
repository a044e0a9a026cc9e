"""The concierge core: configuration, domain model, storage, the request→session lifecycle and app wiring."""

__version__ = "0.1.0"
