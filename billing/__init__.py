"""Prices, quotes, payment providers (Stripe; invoice/ledger), commission, payouts, ledger and webhooks."""
