"""The matcher's exception hierarchy; third-party failures are translated at the boundary."""

from __future__ import annotations


class MatcherError(Exception):
    """Base of every error the matcher raises on purpose."""


class EmbedderUnavailable(MatcherError):
    """The configured embedding backend cannot be loaded here (missing package or weights)."""


class IndexCorrupt(MatcherError):
    """A persisted index cannot be read; the caller rebuilds it from the catalogue."""
