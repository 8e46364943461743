"""One trace as a tree: the row's root, its task part, its scorer parts, its model calls.

Wire contract (``shared/DESIGN.md``): spans below a ``scorer`` span belong to the scorer;
everything else under the ``eval`` root belongs to the task. Tokens count on *leaf* model
calls only: a framework span reporting the usage of the model call under it (Vercel's
``ai.generateText`` around ``ai.generateText.doGenerate``, an OpenInference LLM span around
an OpenAI instrumentation span) must not count twice (pitfall 1 of
``reference/genai-attributes.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from evalhouse.evaluators._traces import Span

__all__ = ["MODEL_CALLS", "Partition", "TraceTree"]

MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})


def is_model_call(span: Span) -> bool:
    return span.operation in MODEL_CALLS


@dataclass
class Partition:
    """The spans of one row, split into the task part and the scorer parts."""

    task: list[Span] = field(default_factory=list)
    task_spans: list[Span] = field(default_factory=list)  # outermost `task` spans
    scorer: list[Span] = field(default_factory=list)
    scorer_spans: list[Span] = field(default_factory=list)  # outermost `scorer` spans
    task_calls: list[Span] = field(default_factory=list)  # leaf model calls of the task
    judge_calls: list[Span] = field(default_factory=list)  # leaf model calls of scorers


class TraceTree:
    """Parent/child links of one trace's spans; spans whose parent is missing are orphans."""

    def __init__(self, spans: Sequence[Span]) -> None:
        self.spans = list(spans)
        self.by_id = {span.span_id: span for span in self.spans}
        self.children: dict[str, list[Span]] = {}
        self.orphans: list[Span] = []
        for span in self.spans:
            if not span.parent_id:
                continue
            if span.parent_id in self.by_id:
                self.children.setdefault(span.parent_id, []).append(span)
            else:
                self.orphans.append(span)

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
        order: list[tuple[Span, bool]] = []
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
            else:
                part.task.append(span)
                if span.purpose == "task" and not in_task:
                    part.task_spans.append(span)
                    in_task = True
            order.append((span, in_scorer))
            for child in self.children.get(span.span_id, ()):
                stack.append((child, in_scorer, in_task))
        # Post-order: a model call is a leaf when no model call sits below it.
        call_below: dict[str, bool] = {}
        for span, in_scorer in reversed(order):
            below = False
            for child in self.children.get(span.span_id, ()):
                if child.span_id in call_below and (
                    call_below[child.span_id] or is_model_call(child)
                ):
                    below = True
                    break
            call_below[span.span_id] = below
            if is_model_call(span) and not below:
                (part.judge_calls if in_scorer else part.task_calls).append(span)
        part.task_calls.sort(key=lambda span: span.start_ns)
        part.judge_calls.sort(key=lambda span: span.start_ns)
        return part


def _names_experiment(span: Span) -> bool:
    return bool(
        span.experiment_id
        or span.experiment_name
        or span.attributes.get("braintrust.parent", "").startswith("experiment_id:")
    )
