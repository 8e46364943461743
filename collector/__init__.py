"""The OTLP collector: gRPC and HTTP receivers, validation, write-ahead log, ClickHouse writer.

>>> from evalhouse.collector import Collector        # doctest: +SKIP
"""

from __future__ import annotations

from evalhouse.collector._service import Addresses, Collector

__all__ = ["Addresses", "Collector"]
