"""The replay's experiment runner: the SDK (``evalhouse.run_experiment``), which only the
surfaces may run (``docs/architecture.md``). The replayed calls go through the real LLM
clients, each traced as a GenAI model-call span by the replay itself (``replay/_requests.py``;
nothing is auto-instrumented in the server), so the evaluator prices them like any
experiment's; spans go over OTLP to this server's collector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from evalhouse.config import Settings
from evalhouse.errors import EvalhouseError
from evalhouse.replay import ExperimentRunner

__all__ = ["SdkRunner", "collector_endpoint", "sdk_runner"]


def collector_endpoint(settings: Settings) -> str:
    """The OTLP/gRPC endpoint of the collector these settings run."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.grpc_port}"


class SdkRunner:
    """Experiments traced by the SDK to ``endpoint`` (see the module's docstring)."""

    def __init__(self, endpoint: str, api_key: str | None = None) -> None:
        from evalhouse.instrumentation import init

        # No auto-instrumentation: the replay traces its own calls (replay/_requests.py),
        # and the server's other LLM calls (judges) stay out of its traces.
        self.tracing = init(endpoint=endpoint, api_key=api_key, instrument=False)
        if self.tracing.error is not None:
            raise EvalhouseError(f"replay cannot trace to {endpoint}: {self.tracing.error}")

    def tracer(self) -> trace.Tracer:
        provider = self.tracing.provider
        if provider is None:
            return trace.get_tracer("evalhouse.replay")
        return provider.get_tracer("evalhouse.replay")

    def flush(self) -> bool:
        return self.tracing.force_flush()

    def run(
        self,
        name: str,
        rows: Sequence[dict[str, Any]],
        task: Any,
        *,
        scorers: Sequence[str],
        metadata: dict[str, Any],
        dataset: str,
        concurrency: int,
        experiment_id: str,
    ) -> None:
        from evalhouse.instrumentation import run_experiment

        run_experiment(
            name,
            data=list(rows),
            task=task,
            scorers=list(scorers),
            metadata=metadata,
            dataset=dataset,
            max_concurrency=concurrency,
            experiment_id=experiment_id,
            summary_timeout=0,
            progress=False,
        )


def sdk_runner(settings: Settings) -> ExperimentRunner:
    """The runner of a server with these settings (its own collector)."""
    return SdkRunner(collector_endpoint(settings), next(iter(settings.api_key_values()), None))
