// An evalhouse experiment from Node.js with plain OpenTelemetry: no evalhouse SDK involved.
//
// For every row of dataset.json it emits the span tree of docs/wire-contract.md:
//
//   eval (evalhouse.span.purpose=eval: experiment, row id, trial, input, expected, output)
//   ├── task (purpose=task: input, output)
//   │   └── chat gpt-4o-mini (OTel GenAI attributes: provider, model, tokens)
//   └── score exact_match (purpose=scorer: evalhouse.score.name / .value)
//
// The LLM call is SIMULATED: no model is called and no API key is needed. Its span carries the
// attributes an OpenTelemetry GenAI instrumentation sets on a real call, with token counts
// estimated from the text, so evalhouse treats it exactly like a real one.
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 node experiment.mjs
//
// Prints one JSON line per row (what was sent) and exits 1 if the spans could not be exported.

import { createHash, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";

import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

const EXPERIMENT_NAME = process.env.EVALHOUSE_EXPERIMENT_NAME || "node-example";
const DATASET_NAME = "node-example-questions";
const DATASET_FILE = new URL("./dataset.json", import.meta.url);
const PROVIDER = "openai";
const MODEL = "gpt-4o-mini";
const SYSTEM_PROMPT = "Answer with a name or a number only.";

// Canned replies of the simulated model; the last one is deliberately not an exact match, so
// the experiment has a failing row to look at.
const CANNED_REPLIES = new Map([
  ["What is the capital of France?", "Paris"],
  ["At how many degrees Celsius does water boil at sea level?", "100"],
  ["Who wrote Hamlet?", "Shakespeare"],
]);

// Wire-contract values are JSON-encoded strings (docs/wire-contract.md, "Encoding").
const json = (value) => JSON.stringify(value ?? null);

// The dataset item's own id, else a stable hash of its input, so that trials and later runs
// of the same input share a row id (that is how evalhouse matches rows across experiments).
function rowIdOf(item) {
  if (item.id !== undefined && item.id !== null) return String(item.id);
  return createHash("sha256").update(json(item.input)).digest("hex").slice(0, 16);
}

// About four characters per token: only for the simulation. A real instrumentation reports
// the provider's own counts.
const estimateTokens = (text) => Math.ceil(text.length / 4);

async function simulatedChat(tracer, question) {
  // OTel GenAI span name: "{gen_ai.operation.name} {gen_ai.request.model}".
  return tracer.startActiveSpan(
    `chat ${MODEL}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": MODEL,
      },
    },
    async (span) => {
      try {
        const answer = CANNED_REPLIES.get(question) ?? "I don't know.";
        const usage = {
          inputTokens: estimateTokens(SYSTEM_PROMPT) + estimateTokens(question),
          outputTokens: estimateTokens(answer),
        };
        span.setAttributes({
          "gen_ai.response.model": `${MODEL}-2024-07-18`,
          "gen_ai.response.finish_reasons": ["stop"],
          "gen_ai.usage.input_tokens": usage.inputTokens,
          "gen_ai.usage.output_tokens": usage.outputTokens,
        });
        return { answer, usage };
      } finally {
        span.end();
      }
    },
  );
}

async function task(tracer, input) {
  return tracer.startActiveSpan(
    "task",
    { attributes: { "evalhouse.span.purpose": "task", "evalhouse.input": json(input) } },
    async (span) => {
      try {
        const result = await simulatedChat(tracer, input.question);
        span.setAttribute("evalhouse.output", json(result.answer));
        return result;
      } catch (error) {
        // A task span with status ERROR marks the experiment row as errored.
        span.recordException(error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: String(error?.message ?? error) });
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

async function exactMatch(tracer, output, expected) {
  return tracer.startActiveSpan(
    "score exact_match",
    { attributes: { "evalhouse.span.purpose": "scorer", "evalhouse.score.name": "exact_match" } },
    async (span) => {
      try {
        const value = output === expected ? 1 : 0;
        span.setAttributes({
          "evalhouse.score.value": value,
          "evalhouse.score.explanation":
            value === 1 ? "output equals expected" : `expected ${json(expected)}, got ${json(output)}`,
        });
        return value;
      } finally {
        span.end();
      }
    },
  );
}

async function runRow(tracer, experimentId, item, trial) {
  const rowId = rowIdOf(item);
  return tracer.startActiveSpan(
    "eval",
    {
      root: true, // one trace per row: the eval span never hangs under another span
      attributes: {
        "evalhouse.span.purpose": "eval",
        "evalhouse.experiment.name": EXPERIMENT_NAME,
        "evalhouse.experiment.id": experimentId,
        "evalhouse.experiment.metadata": json({ model: MODEL, prompt: SYSTEM_PROMPT }),
        "evalhouse.dataset.name": DATASET_NAME,
        "evalhouse.dataset.row_id": rowId,
        "evalhouse.trial": trial,
        "evalhouse.input": json(item.input),
        "evalhouse.expected": json(item.expected),
        "evalhouse.metadata": json(item.metadata ?? {}),
      },
    },
    async (root) => {
      try {
        const sent = { row_id: rowId, trial, trace_id: root.spanContext().traceId };
        let result;
        try {
          result = await task(tracer, item.input);
        } catch (error) {
          // Already recorded on the task span; the other rows go on.
          return { ...sent, error: String(error?.message ?? error) };
        }
        root.setAttribute("evalhouse.output", json(result.answer));
        const score = await exactMatch(tracer, result.answer, item.expected);
        return {
          ...sent,
          output: result.answer,
          input_tokens: result.usage.inputTokens,
          output_tokens: result.usage.outputTokens,
          score,
        };
      } finally {
        root.end();
      }
    },
  );
}

async function main() {
  // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (http://host:4317 = plaintext gRPC) and
  // OTEL_EXPORTER_OTLP_HEADERS (authorization=Bearer%20KEY when evalhouse has API keys).
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": process.env.OTEL_SERVICE_NAME || "evalhouse-node-example",
    }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  // register() installs the async-context manager that nests startActiveSpan across awaits.
  provider.register();
  const tracer = provider.getTracer("evalhouse-node-example", "0.1.0");

  const dataset = JSON.parse(await readFile(DATASET_FILE, "utf8"));
  const experimentId = randomUUID(); // one id per run of the experiment
  for (const item of dataset) {
    console.log(JSON.stringify(await runRow(tracer, experimentId, item, 0)));
  }

  // shutdown() flushes the batch; it rejects when the collector did not accept the spans.
  try {
    await provider.shutdown();
  } catch (error) {
    console.error(
      `experiment.mjs: could not export the spans (${error?.message ?? error}); ` +
        "check OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4317) and, if evalhouse " +
        "has API keys, OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<key>",
    );
    process.exitCode = 1;
  }
}

await main();
