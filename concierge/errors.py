"""One exception hierarchy for the core; callers catch `ConciergeError` or one of its branches."""

from __future__ import annotations


class ConciergeError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(ConciergeError):
    """The configuration is invalid; the message names each offending variable."""


class StorageError(ConciergeError):
    """The database or Redis could not be used as configured."""


class DomainError(ConciergeError):
    """A request that the domain rules refuse; nothing was changed."""


class NotFound(DomainError):
    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} does not exist")
        self.kind = kind
        self.key = key


class IllegalTransition(DomainError):
    """A lifecycle event that the current state does not allow."""

    def __init__(self, subject: str, state: str, event: str) -> None:
        super().__init__(f"{subject} is {state}: cannot {event}")
        self.subject = subject
        self.state = state
        self.event = event


class Refused(DomainError):
    """Something a person asked for that cannot be done; `reason` names the message they read."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class InviteRefused(DomainError):
    """An invitation code that cannot be redeemed; `reason` is one of invalid, used_up, expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invitation code refused: {reason}")
        self.reason = reason
