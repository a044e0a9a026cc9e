"""Prometheus metrics, in a registry owned by the app rather than the process-global one."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from concierge import __version__


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    dependency_up: Gauge

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        Info("concierge_build", "Version of the running service", registry=registry).info(
            {"version": __version__}
        )
        return cls(
            registry=registry,
            http_requests=Counter(
                "concierge_http_requests",
                "HTTP requests by route, method and status",
                ["route", "method", "status"],
                registry=registry,
            ),
            http_latency=Histogram(
                "concierge_http_request_duration_seconds",
                "HTTP request latency by route",
                ["route"],
                registry=registry,
            ),
            dependency_up=Gauge(
                "concierge_dependency_up",
                "1 when the dependency answered the last readiness check",
                ["dependency"],
                registry=registry,
            ),
        )
