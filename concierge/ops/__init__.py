"""The operator console at /ops: operator accounts, login sessions, and read-mostly pages over the
whole service (live view, lists, charts, recordings with their access log)."""
