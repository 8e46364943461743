"""The one path every receiver uses: validate, make durable, answer."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from evalhouse.collector._json import json_to_protobuf
from evalhouse.collector._metrics import Metrics
from evalhouse.collector._validate import InvalidRequest, prepare
from evalhouse.collector._wal import Backlogged, Wal, WalUnavailable
from evalhouse.store import Signal

logger = logging.getLogger(__name__)

__all__ = ["Backlogged", "Ingest", "InvalidRequest", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """What to answer: how many items were rejected and why (OTLP partial success)."""

    rejected: int
    message: str


class Ingest:
    def __init__(self, wal: Wal, metrics: Metrics, max_attribute_bytes: int) -> None:
        self.wal = wal
        self.metrics = metrics
        self.max_attribute_bytes = max_attribute_bytes

    def export(self, signal: Signal, body: bytes, *, json: bool = False) -> Outcome:
        """Store one export request (protobuf, or OTLP/JSON). Returns once it is durable.

        Raises :class:`InvalidRequest` for an undecodable body and :class:`Backlogged` when
        the spool is full; nothing is stored in either case.
        """
        try:
            encoded, left_out = json_to_protobuf(signal, body) if json else (body, [])
            prepared = prepare(signal, encoded, self.max_attribute_bytes)
        except InvalidRequest:
            self.metrics.add("invalid_requests")
            raise
        for reason in left_out:  # items the JSON conversion could not read
            prepared.reject(reason)
        received = prepared.accepted + prepared.rejected
        digest = hashlib.blake2b(body, digest_size=16).digest()
        try:
            stored = self.wal.append(signal, digest, prepared.accepted, prepared.payload)
        except Backlogged:
            self.metrics.add("throttled_requests")
            raise
        except WalUnavailable:
            self.metrics.add("wal_failures")
            raise
        if not stored:
            self.metrics.add("duplicate_requests")
            return Outcome(0, "")
        self.metrics.add("received", received)
        self.metrics.add("accepted", prepared.accepted)
        if prepared.rejected:
            self.metrics.add("rejected", prepared.rejected)
        if prepared.truncated:
            self.metrics.add("truncated_values", prepared.truncated)
        if prepared.utf8_repaired:
            self.metrics.add("utf8_repaired", prepared.utf8_repaired)
        message = prepared.message
        if message:
            logger.info("partial success for a %s request: %s", signal, message)
        return Outcome(prepared.rejected, message)
