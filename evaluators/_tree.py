"""One trace as a tree: the row's root, its task part, its scorer parts, its model calls.

Wire contract (``docs/wire-contract.md``): spans below a ``scorer`` span belong to the scorer;
everything else under the ``eval`` root belongs to the task. Tokens count on *leaf* model
calls only: a framework span reporting the usage of the model call under it (Vercel's
``ai.generateText`` around ``ai.generateText.doGenerate``, an OpenInference LLM span around
an OpenAI instrumentation span) must not count twice (``docs/sql.md``, "Tokens"). The
experiment rows and the trace page both take their model calls and leaf calls from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from evalhouse.evaluators._traces import Span

__all__ = ["MODEL_CALLS", "CallTree", "Linked", "Partition", "TraceTree", "is_model_call"]

# The operations (``LlmOperation``, normalised at ingest from every dialect) of a model call.
MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})


class Linked(Protocol):
    """What the tree reads of a span: its place in the trace and its operation."""

    @property
    def span_id(self) -> str: ...

    @property
    def parent_id(self) -> str: ...

    @property
    def operation(self) -> str: ...


def is_model_call(span: Linked) -> bool:
    """Whether the span is a call to a model (its tokens may count, if it is a leaf)."""
    return span.operation in MODEL_CALLS


L = TypeVar("L", bound=Linked)


class CallTree(Generic[L]):
    """Parent/child links of one trace's spans; spans whose parent is missing are orphans."""

    def __init__(self, spans: Sequence[L]) -> None:
        self.spans = list(spans)
        self.by_id = {span.span_id: span for span in self.spans}
        self.children: dict[str, list[L]] = {}
        self.orphans: list[L] = []
        for span in self.spans:
            if not span.parent_id:
                continue
            if span.parent_id in self.by_id:
                self.children.setdefault(span.parent_id, []).append(span)
            else:
                self.orphans.append(span)

    def leaf_calls(self, order: Sequence[L]) -> list[L]:
        """The model calls of ``order`` with no model call below them: the calls that count.

        ``order`` is a walk down the tree (each span once, before the spans below it); the
        calls come back in reverse walk order. A model call below a span that is not in
        ``order`` (a cycle of bad parent ids) is not seen.
        """
        call_below: dict[str, bool] = {}
        leaves: list[L] = []
        for span in reversed(order):
            below = False
            for child in self.children.get(span.span_id, ()):
                if child.span_id in call_below and (
                    call_below[child.span_id] or is_model_call(child)
                ):
                    below = True
                    break
            call_below[span.span_id] = below
            if is_model_call(span) and not below:
                leaves.append(span)
        return leaves

    def all_leaf_calls(self) -> list[L]:
        """The leaf model calls of the whole trace: under its roots, its orphans, and the spans
        only a cycle of bad parent ids reaches."""
        visited: set[str] = set()
        order: list[L] = []
        tops = [span for span in self.spans if span.parent_id not in self.by_id]
        for top in [*tops, *self.spans]:
            stack = [top]
            while stack:
                span = stack.pop()
                if span.span_id in visited:
                    continue
                visited.add(span.span_id)
                order.append(span)
                stack.extend(self.children.get(span.span_id, ()))
        return self.leaf_calls(order)


@dataclass
class Partition:
    """The spans of one row, split into the task part and the scorer parts."""

    task: list[Span] = field(default_factory=list)
    task_spans: list[Span] = field(default_factory=list)  # outermost `task` spans
    scorer: list[Span] = field(default_factory=list)
    scorer_spans: list[Span] = field(default_factory=list)  # outermost `scorer` spans
    task_calls: list[Span] = field(default_factory=list)  # leaf model calls of the task
    judge_calls: list[Span] = field(default_factory=list)  # leaf model calls of scorers


class TraceTree(CallTree[Span]):
    """The tree of an experiment trace: which span is the row's root, and its parts."""

    def row_root(self) -> Span | None:
        """The span an experiment row hangs from.

        The outermost ``eval`` span (earliest if several); else, for dialects without one
        (Langfuse experiments, Braintrust parents), the outermost span naming an experiment.
        """
        evals = [span for span in self.spans if span.purpose == "eval"]
        found = self._outermost(evals)
        if found is None:
            named = [span for span in self.spans if _names_experiment(span)]
            found = self._outermost(named)
        return found

    def _outermost(self, candidates: list[Span]) -> Span | None:
        chosen = {span.span_id for span in candidates}
        tops = [span for span in candidates if not self._has_ancestor_in(span, chosen)]
        return min(tops, key=lambda span: (span.start_ns, span.span_id), default=None)

    def _has_ancestor_in(self, span: Span, ids: set[str]) -> bool:
        seen: set[str] = set()
        parent = self.by_id.get(span.parent_id)
        while parent is not None and parent.span_id not in seen:
            if parent.span_id in ids:
                return True
            seen.add(parent.span_id)
            parent = self.by_id.get(parent.parent_id)
        return False

    def partition(self, root: Span) -> Partition:
        """Walk the row's subtree once: task vs scorer spans, and their leaf model calls."""
        part = Partition()
        order: list[Span] = []
        judged: set[str] = set()  # ids of the spans below a scorer span
        stack: list[tuple[Span, bool, bool]] = [(root, False, False)]
        visited: set[str] = set()
        while stack:
            span, in_scorer, in_task = stack.pop()
            if span.span_id in visited:  # a cycle of bad parent ids must not loop forever
                continue
            visited.add(span.span_id)
            if not in_scorer and span.purpose == "scorer":
                in_scorer = True
                part.scorer_spans.append(span)
            if in_scorer:
                part.scorer.append(span)
                judged.add(span.span_id)
            else:
                part.task.append(span)
                if span.purpose == "task" and not in_task:
                    part.task_spans.append(span)
                    in_task = True
            order.append(span)
            for child in self.children.get(span.span_id, ()):
                stack.append((child, in_scorer, in_task))
        for call in self.leaf_calls(order):
            (part.judge_calls if call.span_id in judged else part.task_calls).append(call)
        part.task_calls.sort(key=lambda span: span.start_ns)
        part.judge_calls.sort(key=lambda span: span.start_ns)
        return part


def _names_experiment(span: Span) -> bool:
    return bool(
        span.experiment_id
        or span.experiment_name
        or span.attributes.get("braintrust.parent", "").startswith("experiment_id:")
    )
