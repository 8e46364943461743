"""Online evaluation: rules over live traffic, feedback, review queues, datasets from
production traces, TrainLoop suites.

The service side of ``/api/rules``, ``/api/feedback``, ``/api/queues``,
``/api/datasets/{name}/from-traces`` and ``evalhouse rules ...``: the HTTP routes and the
commands are thin layers over these functions. The scoring itself is the evaluator daemon's
(``evaluators/_online.py``): rules are rows of the ``rules`` table it reads each cycle.

>>> from evalhouse.online import Feedback, record_feedback
>>> record_feedback(store, Feedback(name="thumbs", trace_id="ab" * 16, value=1.0),
...                 source="api")                                     # doctest: +SKIP
"""

from __future__ import annotations

from evalhouse.online._body import decode_body
from evalhouse.online._feedback import Feedback, list_scores, record_feedback
from evalhouse.online._from_traces import FROM_TRACES_USAGE, dataset_from_traces, select_traces
from evalhouse.online._queues import QUEUE_USAGE, REVIEW_USAGE, Queues, ScoreConfig
from evalhouse.online._rules import Rules, rule_json, spec_from_json
from evalhouse.online._status import rule_status
from evalhouse.online._trainloop import trainloop_suite

__all__ = [
    "FROM_TRACES_USAGE",
    "QUEUE_USAGE",
    "REVIEW_USAGE",
    "Feedback",
    "Queues",
    "Rules",
    "ScoreConfig",
    "dataset_from_traces",
    "decode_body",
    "list_scores",
    "record_feedback",
    "rule_json",
    "rule_status",
    "select_traces",
    "spec_from_json",
    "trainloop_suite",
]
