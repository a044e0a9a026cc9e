"""One exception hierarchy for billing; provider errors are translated at the provider's boundary."""

from __future__ import annotations


class BillingError(Exception):
    """Base class of everything billing raises."""


class ProviderError(BillingError):
    """The payment provider refused or failed a call.

    `retryable`: the outcome is unknown (timeout, 5xx, connection lost), so the same call with the
    same idempotency key may be made again; otherwise the provider said no and retrying is pointless.
    """

    def __init__(self, message: str, *, retryable: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class WebhookRejected(BillingError):
    """A webhook that is not signed by the provider, too old, or not a webhook at all."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
