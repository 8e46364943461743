"""The server's replays send their calls from a child process (``docs/replay.md``).

Inside ``evalhouse serve`` a replayed call shares one interpreter with the collector storing
the replay's own spans and the evaluator computing its rows: measured at 32 calls at once
against a server answering in 50 ms, each call waited 47 ms for the interpreter on top of the
50 ms, and the replay ran at 37–41% of the ideal rate (``benchmarks/README.md``). So the
server runs step 4 of a replay, :func:`evalhouse.replay.replay_targets`, in a spawned process
of its own: it gets the spec, the calls, the scorers and the experiment ids, traces to this
server's collector through the SDK like any client, and reports each row (for the progress
and the budget) and then its counts over a pipe. The store stays in the server: the child
never opens it.

A child that dies (killed, out of memory) fails the replay with its exit code; a child whose
server died stops within a second instead of replaying for nobody.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from evalhouse.errors import EvalhouseError
from evalhouse.replay import Call, Progress, ReplaySpec, replay_targets

__all__ = ["ChildReplayer"]

logger = logging.getLogger(__name__)
_JOIN_SECONDS = 10.0
_BATCH_SECONDS = 0.1


class ChildReplayer:
    """A :class:`evalhouse.replay.Replayer` that runs the calls in a spawned process tracing
    to the collector at ``endpoint``."""

    def __init__(self, endpoint: str, api_key: str | None = None) -> None:
        self.endpoint = endpoint
        self.api_key = api_key

    def __call__(
        self,
        spec: ReplaySpec,
        calls: Sequence[Call],
        scorers: Sequence[str],
        experiment_ids: dict[str, str],
        progress: Progress,
    ) -> dict[str, int]:
        context = multiprocessing.get_context("spawn")  # never fork a process holding the store
        receiving, sending = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(self.endpoint, self.api_key, spec, list(calls), list(scorers)),
            kwargs={"experiment_ids": experiment_ids, "pipe": sending, "parent": os.getpid()},
            name=f"evalhouse-replay-{spec.name}",
            daemon=True,  # ends with the server
        )
        child.start()
        sending.close()  # the child holds the only writing end: EOF when it ends
        try:
            return _follow(receiving, child, progress)
        finally:
            receiving.close()
            child.join(_JOIN_SECONDS)
            if child.is_alive():
                child.kill()
                child.join()


def _follow(pipe: Connection, child: Any, progress: Progress) -> dict[str, int]:
    while True:
        try:
            message = pipe.recv()
        except EOFError:
            child.join(_JOIN_SECONDS)
            raise EvalhouseError(
                f"the replay's process ended (exit code {child.exitcode}) before it "
                "finished; the server's log says why. Rows it replayed are stored: start the "
                "replay again for the rest"
            ) from None
        kind, body = message
        if kind == "rows":
            for label, cost, failed in body:
                progress.advance(label, cost=cost, failed=failed)
        elif kind == "done":
            replayed, budget_stop = body
            progress.set(budget_stop=budget_stop)
            return dict(replayed)
        else:
            raise EvalhouseError(body)


def _child(
    endpoint: str,
    api_key: str | None,
    spec: ReplaySpec,
    calls: list[Call],
    scorers: list[str],
    *,
    experiment_ids: dict[str, str],
    pipe: Connection,
    parent: int,
) -> None:
    """The child's whole life: trace, replay, report."""
    from evalhouse.surfaces._replay_sdk import SdkRunner

    threading.Thread(target=_orphaned, args=(parent,), daemon=True).start()
    rows: queue.SimpleQueue[tuple[str, float | None, bool] | None] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_rows, args=(rows, pipe), daemon=True)
    sender.start()
    progress = Progress(
        name=spec.name,
        budget_usd=spec.budget_usd,
        models={t.label: {"done": 0, "total": len(calls), "errors": 0} for t in spec.targets},
        listener=lambda label, cost, failed: rows.put((label, cost, failed)),
    )

    def send(kind: str, body: Any) -> None:
        rows.put(None)  # every row before the end
        sender.join()
        pipe.send((kind, body))

    try:
        runner = SdkRunner(endpoint, api_key)
        replayed = replay_targets(runner, spec, calls, scorers, experiment_ids, progress)
        send("done", (replayed, progress.budget_stop))
    except EvalhouseError as exc:
        send("failed", str(exc))
    except Exception as exc:  # the server must hear why, not only see the pipe close
        traceback.print_exc()
        send("failed", f"the replay's process failed: {type(exc).__name__}: {exc}")
    finally:
        pipe.close()


def _send_rows(rows: queue.SimpleQueue[Any], pipe: Connection) -> None:
    """Rows go to the server in batches, sent by this thread alone: a worker thread never
    waits on the pipe (a busy server reads it late)."""
    while True:
        batch = [rows.get()]
        time.sleep(_BATCH_SECONDS)
        while not rows.empty():
            batch.append(rows.get())
        ended = any(row is None for row in batch)
        pipe.send(("rows", [row for row in batch if row is not None]))
        if ended:
            return


def _orphaned(parent: int) -> None:
    """End the child once its server is gone (its parent changes when the server dies)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
