"""Prometheus metrics on their own port (``metrics_port``; off by default).

Per call, from an interceptor (:class:`CallMetrics`): ``offerbandit_rpc_seconds`` (a
latency histogram per method) and ``offerbandit_rpc_total`` (calls per method and status).
On each scrape, from the service (:class:`ServiceCollector`, one ``stats()`` per scrape):

=======================================  ===============================================
``offerbandit_decisions``                decisions in the log
``offerbandit_activations``              activated decisions
``offerbandit_open_windows``             decisions whose attribution window is open
``offerbandit_closed``                   decisions whose reward is fixed
``offerbandit_learned``                  decisions the live model has learned
``offerbandit_learning_lag``             closed decisions not learned yet
``offerbandit_outcomes{status}``         outcomes by status (attributed, late …)
``offerbandit_duplicate_outcomes``       duplicates since start
``offerbandit_score_fallbacks``          decisions taken by the uniform fallback since start
``offerbandit_learn_skipped``            closed decisions the learner could not take
``offerbandit_log_writable``             1 while the decision log accepts writes, else 0
``offerbandit_model_info{version}``      1, labelled with the live model's version
``offerbandit_model_age_seconds``        since the live model was published
``offerbandit_policy_removals{rule}``    treatments each contact-policy rule removed
``offerbandit_retention_decisions``      decisions retention deleted (also ``_outcomes``,
                                         ``_passes``)
=======================================  ===============================================

The endpoint listens on ``metrics_host`` (127.0.0.1 by default): scrape it from the same
machine or expose it deliberately.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bandit.service import DecisionService
from server.interceptors import Interceptor, around

if TYPE_CHECKING:
    from server.interceptors import Continuation


BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class CallMetrics(Interceptor):
    """Latency and status of every call, per method (health checks included)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "offerbandit_rpc_seconds",
            "Time from the call's start to its answer, per method",
            ["method"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.calls = Counter(
            "offerbandit_rpc", "Calls per method and status", ["method", "code"], registry=registry
        )
        self._observers: dict[str, Callable[[float, str], None]] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        return around(handler, time.perf_counter, self.observer(details.method))

    def observer(self, full_method: str) -> Callable[[float, str], None]:
        """``observe(start, code)`` for calls of ``full_method`` (one per method, kept)."""
        found = self._observers.get(full_method)
        if found is not None:
            return found
        method = full_method.rsplit("/", 1)[-1]
        histogram = self.seconds.labels(method)
        counters: dict[str, Any] = {}

        def observe(start: float, code: str) -> None:
            histogram.observe(time.perf_counter() - start)
            counter = counters.get(code)
            if counter is None:
                counter = counters[code] = self.calls.labels(method, code)
            counter.inc()

        if len(self._observers) < 1024:  # names of unknown methods come from callers
            self._observers[full_method] = observe
        return observe


class ServiceCollector(Collector):
    """The service's counters and gauges, read once per scrape."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service

    def _lag(self) -> int:
        """Log positions closed but not learned (positions, not counts: retention deletes
        learned rows, so the log's count of closed decisions falls behind the learner's)."""
        last_closed = getattr(self.service.log, "last_closed", None)
        if last_closed is None:
            s = self.service.stats(recent_seconds=60.0)
            return max(0, s.log.closed - s.learned)
        return max(0, int(last_closed()) - self.service.position)

    def collect(self) -> Iterator[Metric]:
        s = self.service.stats(recent_seconds=60.0)
        log = s.log
        for name, value, text in (
            ("decisions", log.decisions, "Decisions in the log"),
            ("activations", log.activations, "Activated decisions"),
            ("open_windows", log.pending_windows, "Decisions whose attribution window is open"),
            ("closed", log.closed, "Decisions whose reward is fixed"),
            ("learned", s.learned, "Decisions the live model has learned"),
            ("learning_lag", self._lag(), "Closed decisions not learned yet"),
            ("duplicate_outcomes", s.duplicates, "Duplicate outcomes since start"),
            ("score_fallbacks", s.score_fallbacks, "Decisions by the uniform fallback since start"),
            ("learn_skipped", s.learn_skipped, "Closed decisions the learner could not take"),
            ("log_writable", int(self.service.healthy), "1 while the log accepts writes"),
        ):
            yield GaugeMetricFamily(f"offerbandit_{name}", text, value=value)
        outcomes = GaugeMetricFamily(
            "offerbandit_outcomes", "Outcomes in the log by status", labels=["status"]
        )
        for status, count in sorted(log.outcomes.items()):
            outcomes.add_metric([status], count)
        yield outcomes
        info = GaugeMetricFamily(
            "offerbandit_model_info", "The live model's version", labels=["version"]
        )
        info.add_metric([s.model_version], 1)
        yield info
        gate = self.service.contact
        if gate is not None:
            removals = CounterMetricFamily(
                "offerbandit_policy_removals",
                "Treatments the contact policy removed, per rule, since start",
                labels=["rule"],
            )
            for rule, count in sorted(dict(gate.removals).items()):
                removals.add_metric([rule], count)
            yield removals
        retention = self.service.retention
        if retention is not None:
            t = retention.totals
            for name, value, text in (
                ("decisions", t.decisions, "Decisions retention deleted since start"),
                ("outcomes", t.outcomes, "Outcomes retention deleted since start"),
                ("passes", t.passes, "Retention passes since start"),
            ):
                yield CounterMetricFamily(f"offerbandit_retention_{name}", text, value=value)
        yield GaugeMetricFamily(
            "offerbandit_model_age_seconds",
            "Seconds since the live model was published (or loaded at start)",
            value=max(0.0, time.time() - self.service.decider.published_at),
        )


class Metrics:
    """The registry, the per-call interceptor and the HTTP endpoint of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.interceptor = CallMetrics(self.registry)
        self._server: Any = None
        self.port = 0

    def serve(self, service: DecisionService, host: str, port: int) -> int:
        """Start the endpoint (port 0: any free one) and return its port."""
        self.registry.register(ServiceCollector(service))
        self._server, thread = start_http_server(port, addr=host, registry=self.registry)
        del thread
        self.port = int(self._server.server_port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
