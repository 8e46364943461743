"""ClickHouse access for evalhouse: the only package that talks to ClickHouse or chDB.

>>> from evalhouse.store import Store, migrate     # doctest: +SKIP
>>> store = Store("chdb:///var/lib/evalhouse/clickhouse")
>>> migrate(store)
"""

from __future__ import annotations

from evalhouse.store._client import Store, quote_identifier, redact_dsn
from evalhouse.store._migrations import MIGRATIONS, Migration, migrate
from evalhouse.store._normalise import NORMALISED_COLUMNS, NormalisedColumn
from evalhouse.store._otlp import SIGNALS, Signal
from evalhouse.store._schema import Topology
from evalhouse.store._sink import OtlpSink

__all__ = [
    "MIGRATIONS",
    "NORMALISED_COLUMNS",
    "SIGNALS",
    "Migration",
    "NormalisedColumn",
    "OtlpSink",
    "Signal",
    "Store",
    "Topology",
    "migrate",
    "quote_identifier",
    "redact_dsn",
]
