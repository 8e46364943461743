"""The evaluator daemon: workers on an event loop of their own, in a background thread.

``evalhouse serve`` runs it in-process (chDB allows one process per data directory);
``evalhouse evaluator`` runs it alone against a ClickHouse server, as many processes as wanted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from evalhouse.config import Settings
from evalhouse.errors import ConfigError, QueryError, StoreUnavailable
from evalhouse.evaluators._rules import read_rules, sync_rules
from evalhouse.evaluators._scoring import Resolver, ScorerPool
from evalhouse.evaluators._worker import Counters, EvaluatorConfig, Observer, Worker, pause
from evalhouse.store import Store, migrate

__all__ = ["Evaluator"]

logger = logging.getLogger(__name__)

_LOG_SECONDS = 60.0


def config_from(settings: Settings) -> EvaluatorConfig:
    """The daemon's configuration; refuses a lease too short for a scorer to finish in it."""
    if settings.evaluator_lease_seconds < 2 * settings.evaluator_scorer_timeout:
        raise ConfigError(
            "evaluator_lease_seconds",
            f"{settings.evaluator_lease_seconds:g} s is shorter than twice "
            f"evaluator_scorer_timeout ({settings.evaluator_scorer_timeout:g} s); a scorer "
            "must be able to finish within a lease: raise the lease or lower the timeout",
        )
    return EvaluatorConfig(
        quiet_ms=int(settings.evaluator_quiet_seconds * 1000),
        poll_seconds=settings.evaluator_poll_seconds,
        lease_seconds=settings.evaluator_lease_seconds,
        scorer_timeout=settings.evaluator_scorer_timeout,
        scorer_concurrency=settings.evaluator_scorer_concurrency,
        scorers=dict(settings.evaluator_scorers),
        cluster=bool(settings.cluster),
        summary_quiet_ms=int(settings.explorer_quiet_seconds * 1000),
    )


class Evaluator:
    """Rebuilds experiment rows from stored traces, computes their metrics, runs scorers.

    >>> evaluator = Evaluator(load_settings(), Store(dsn))   # doctest: +SKIP
    >>> evaluator.start()          # background thread; returns at once
    >>> evaluator.stop()           # finishes the cycle, stores results, releases the store

    ``store`` defaults to the configured DSN; each worker gets a client of its own on it.
    ``prepare`` (migrate) runs before the first cycle, retried while ClickHouse is down.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        observer: Observer | None = None,
        resolve: Resolver | None = None,
        worker_id: str | None = None,
        prepare: bool = False,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        # True while the collector of this process has spans to write: summaries wait.
        self._busy = busy
        self.config = config_from(settings)
        base = store or Store(settings.dsn, cluster=settings.cluster)
        self.counters = Counters()
        self.observer = observer or self.counters
        prefix = worker_id or settings.evaluator_worker_id or _default_prefix(base)
        self.worker_ids = [f"{prefix}/{i}" for i in range(settings.evaluator_workers)]
        self._stores = [base.another() for _ in self.worker_ids]
        self._base = base
        self._owns_base = store is None
        self._prepare = prepare
        self._resolve = resolve
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

    @property
    def safe_dsn(self) -> str:
        """Where the evaluator works, without credentials."""
        return self._base.safe_dsn

    def _workers(self) -> list[Worker]:
        # Scorer pools are per worker: their semaphores belong to the running event loop.
        return [
            Worker(
                store,
                self.config,
                worker_id,
                pool=ScorerPool(
                    timeout=self.config.scorer_timeout,
                    concurrency=self.config.scorer_concurrency,
                    resolve=self._resolve,
                ),
                observer=self.observer,
                busy=self._busy,
            )
            for store, worker_id in zip(self._stores, self.worker_ids, strict=True)
        ]

    def _install_executor(self, loop: asyncio.AbstractEventLoop) -> None:
        # Sync scorers and store calls run in threads; the default pool (cpu + 4) would make
        # a few slow sync scorers block everything else.
        size = self.config.scorer_concurrency * len(self.worker_ids) + 8 * len(self.worker_ids)
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=min(size, 512)))

    # --- background mode ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the workers in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="evalhouse-evaluator", daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._install_executor(self._loop)
        self._stop = asyncio.Event()
        self._started.set()
        if self._prepare and not await self._prepared():
            return
        await asyncio.to_thread(self._sync_rules)
        workers = self._workers()
        reporter = asyncio.create_task(self._report())
        try:
            await asyncio.gather(*(worker.run(self._stop) for worker in workers))
        finally:
            reporter.cancel()

    async def _prepared(self) -> bool:
        """Migrate once ClickHouse answers; False when stopped first."""
        assert self._stop is not None
        delay = 0.5
        warned = False
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(migrate, self._base, cluster=self.settings.cluster)
                return True
            except StoreUnavailable as exc:
                if not warned:
                    logger.warning("evaluator: %s; waiting for it", exc)
                    warned = True
            await pause(self._stop, delay)
            delay = min(30.0, delay * 2)
        return False

    def _sync_rules(self) -> None:
        """Save the configuration's ``[[rules]]`` (a changed one as a new version)."""
        if not self.settings.rules and not self._config_rules_stored():
            return
        try:
            sync_rules(self._base, self.settings)
        except StoreUnavailable as exc:
            logger.warning("evaluator: the configuration's rules are not saved yet: %s", exc)

    def _config_rules_stored(self) -> bool:
        # Rules the configuration made earlier are disabled when it no longer has them.
        try:
            return any(r.origin == "config" and r.enabled for r in read_rules(self._base))
        except (StoreUnavailable, QueryError):  # not migrated yet: nothing stored either
            return False

    async def _report(self) -> None:
        last = (0, 0)
        while True:
            await asyncio.sleep(_LOG_SECONDS)
            now = (self.counters.rows, self.counters.scores)
            if now != last:
                logger.info(
                    "evaluator: %d rows computed, %d scorer runs stored (since start)", *now
                )
                last = now

    def stop(self, timeout: float = 30.0) -> None:
        """Stop cycling, store finished results, cancel running scorers, close clients."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is not None and loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout)
        self._thread = None
        self.close()

    def close(self) -> None:
        for store in self._stores:
            store.close()
        if self._owns_base:
            self._base.close()

    # --- one-shot mode (CLI, tests, benchmarks) -----------------------------------------------

    def run_until_idle(self, timeout: float | None = None) -> None:
        """Work in the calling thread until nothing is left to compute or score."""
        if self._prepare:
            migrate(self._base, cluster=self.settings.cluster)
        self._sync_rules()

        async def main() -> None:
            self._install_executor(asyncio.get_running_loop())
            never = asyncio.Event()
            runs = [worker.run(never, until_idle=True) for worker in self._workers()]
            await asyncio.wait_for(asyncio.gather(*runs), timeout)

        started = time.monotonic()
        asyncio.run(main())
        logger.info("evaluator: idle after %.2f s", time.monotonic() - started)


def _default_prefix(store: Store) -> str:
    # One process owns an embedded store, so a fixed name lets a restart keep its leases.
    if store.embedded:
        return "embedded"
    return f"{socket.gethostname()}-{os.getpid()}"
