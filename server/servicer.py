"""The gRPC servicer: each RPC converts, calls the service object, converts back.

No business logic and no try/except here: :func:`server.errors.mapped` maps errors once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc

from bandit.errors import OfferBanditError, TooLarge
from bandit.logcodec import SCHEMA_VERSION
from bandit.service import DecisionService
from server import converters as cv
from server.errors import code_name, mapped
from server.pb.offerbandit.v1 import decision_service_pb2 as pb
from server.pb.offerbandit.v1 import decision_service_pb2_grpc as pb_grpc

STREAM_CHUNK = 512


class DecisionServicer(pb_grpc.DecisionServiceServicer):
    def __init__(self, service: DecisionService) -> None:
        self.svc = service

    @mapped
    def Choose(self, request: pb.ChooseRequest, context: grpc.ServicerContext) -> pb.ChooseResponse:
        return cv.choose_to_pb(self.svc.choose(cv.choose_from_pb(request)))

    @mapped
    def GetDecision(
        self, request: pb.GetDecisionRequest, context: grpc.ServicerContext
    ) -> pb.Decision:
        return cv.decision_to_pb(self.svc.get_decision(request.event_id), SCHEMA_VERSION)

    @mapped
    def RecordOutcome(
        self, request: pb.Outcome, context: grpc.ServicerContext
    ) -> pb.RecordOutcomeResponse:
        return cv.outcome_result_to_pb(self.svc.record_outcome(cv.outcome_from_pb(request)))

    @mapped
    def RecordOutcomes(
        self, request_iterator: Iterator[pb.Outcome], context: grpc.ServicerContext
    ) -> pb.RecordOutcomesResponse:
        limit = self.svc.config.max_stream_outcomes
        items = list(itertools.islice(request_iterator, limit + 1))
        if len(items) > limit:
            raise TooLarge(
                "outcomes", f"the stream carries more than {limit} outcomes; nothing was recorded"
            )
        response = pb.RecordOutcomesResponse()
        for start in range(0, len(items), STREAM_CHUNK):
            chunk = [cv.outcome_from_pb(o) for o in items[start : start + STREAM_CHUNK]]
            results = self.svc.record_outcomes(chunk)
            for i, (o, r) in enumerate(zip(chunk, results, strict=True), start):
                if isinstance(r, OfferBanditError):
                    response.results.append(
                        pb.OutcomeResult(
                            outcome_id=o.outcome_id,
                            status=pb.OUTCOME_STATUS_REJECTED,
                            error_code=code_name(r),
                            error=str(r),
                            index=i,
                        )
                    )
                    response.rejected += 1
                else:
                    response.results.append(
                        pb.OutcomeResult(
                            outcome_id=r.outcome_id,
                            status=cv.OUTCOME_STATUS[r.status],
                            event_id=r.event_id,
                            index=i,
                        )
                    )
                    response.accepted += 1
        return response

    @mapped
    def Activate(
        self, request: pb.ActivateRequest, context: grpc.ServicerContext
    ) -> pb.ActivateResponse:
        at = cv.seconds_from_pb(request.activated_at) if request.HasField("activated_at") else None
        closes = self.svc.activate(request.event_id, at)
        return pb.ActivateResponse(
            event_id=request.event_id, window_closes_at=cv.seconds_to_pb(closes)
        )

    @mapped
    def GetStats(self, request: pb.GetStatsRequest, context: grpc.ServicerContext) -> pb.Stats:
        return cv.stats_to_pb(self.svc.stats(float(request.recent_seconds or 3600)))
