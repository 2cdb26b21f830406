/**
 * The per-request log line as a pure function of the EDR draft (the record the writer is handed), its
 * two printed forms, `HI_LOG` levels, the buffered stdout writer, and that tracing is off (no tracer)
 * when Deno exports no telemetry. The end-to-end view through `deno task serve` is in
 * tests/e2e/request_log_test.ts and tests/e2e/otel_test.ts.
 */
import assert from "node:assert/strict";
import type { EdrDraft, EdrRecord } from "../../lib/edr/mod.ts";
import { type EdrSink, Exchange } from "../../lib/pipeline/exchange.ts";
import { BufferedLineWriter } from "../../lib/http/line_writer.ts";
import { RouterError } from "../../lib/pipeline/errors.ts";
import {
  ALLOWLIST_ORDER,
  fallbackCount,
  jsonLine,
  logfmtLine,
  logs,
  parseLogLevel,
  primaryReason,
  requestLogEntry,
} from "../../lib/http/request_log.ts";
import { decisionHeaders, RequestObserver } from "../../lib/http/request_observer.ts";
import { SLOT_DISPOSITION } from "../../lib/contract/mod.ts";
import { RequestTracer } from "../../lib/http/tracing.ts";
import { SpanStatusCode, trace, type TracerProvider } from "@opentelemetry/api";

const PROMPT = "a prompt that must never be logged 5521";
const POLICY = { version: "test-policy", hash: "0".repeat(64) };

/** A sink that keeps the draft it was handed and seals nothing. */
function capturingSink(): EdrSink & { drafts: EdrDraft[] } {
  const drafts: EdrDraft[] = [];
  return {
    drafts,
    health: () => ({ state: "ok" }),
    commit(draft) {
      drafts.push(draft);
      return Promise.resolve({ ...draft, edr_hash: "e".repeat(64) } as EdrRecord);
    },
  };
}

/** An exchange that fell back from local to OpenAI and answered (as chat_handler fills it in). */
function fallbackExchange(): Exchange {
  const exchange = new Exchange("/v1/chat/completions", Date.parse("2026-11-30T10:00:00Z"));
  exchange.admit({ model: "auto", messages: [{ role: "user", content: PROMPT }] });
  exchange.stream = true;
  exchange.contract = {
    classification: "INTERNAL",
    latency: "interactive",
    max_cost_usd: null,
    requires: [],
    provider_allowlist: ["local", "openai"],
    model_preferences: [],
    authority_required: false,
  };
  exchange.decision = {
    candidates: [
      { heavy: false, model: "qwen3:8b", provider: "local" },
      { heavy: false, model: "gpt-4o-mini", provider: "openai" },
    ],
    factors: [
      "CLASSIFICATION_INTERNAL",
      "LATENCY_INTERACTIVE",
      "LATENCY_INTERACTIVE_ROUTER_MODEL",
      "LOCAL_FIT",
    ],
    constraints: [],
    rejection: null,
    slot: SLOT_DISPOSITION.free,
    pinned: false,
  };
  exchange.attempts.push(
    {
      duration_ms: 3,
      error_code: "UPSTREAM_CONNECT_FAILED",
      model: "qwen3:8b",
      outcome: "fallback",
      provider: "local",
      status: null,
    },
    {
      duration_ms: 40,
      error_code: null,
      model: "gpt-4o-mini",
      outcome: "ok",
      provider: "openai",
      status: 200,
    },
  );
  exchange.served = {
    provider: "openai",
    model: "gpt-4o-mini",
    protocol: "openai_chat",
    modelDigest: null,
    numCtx: null,
  };
  exchange.output = { content: "hello", tool_calls: [], finish_reason: "stop" };
  exchange.usage = { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 };
  exchange.firstByteMs = 45.5;
  return exchange;
}

Deno.test("the log line says what the EDR draft says", () => {
  const exchange = fallbackExchange();
  const sink = capturingSink();
  exchange.commit(sink, POLICY);
  const draft = sink.drafts[0];
  assert.equal(exchange.draft, draft);
  const entry = requestLogEntry(draft, 200, Date.parse("2026-11-30T10:00:01Z"));
  assert.deepEqual(entry, {
    ts: "2026-11-30T10:00:01.000Z",
    level: "warn",
    msg: "request",
    request_id: exchange.requestId,
    endpoint: "/v1/chat/completions",
    stream: true,
    classification: "INTERNAL",
    provider: "openai",
    model: "gpt-4o-mini",
    path: "fallback",
    status: 200,
    reason: "LOCAL_FIT",
    fallbacks: 1,
    first_byte_ms: 45.5,
    total_ms: draft.timings.total_ms,
    input_tokens: 11,
    output_tokens: 2,
    attempt_failures: ["local:UPSTREAM_CONNECT_FAILED"],
  });
  assert.ok(!jsonLine(entry).includes(PROMPT));
  assert.ok(!logfmtLine(entry).includes(PROMPT));
  // At debug the line also carries decide()'s codes.
  assert.deepEqual(requestLogEntry(draft, 200, 0, "debug").factors, draft.decision_factors);
});

Deno.test("the decision headers read the same reason and count as the log line", () => {
  const exchange = fallbackExchange();
  const headers = decisionHeaders(exchange);
  assert.equal(headers["x-hi-provider"], "openai");
  assert.equal(headers["x-hi-model"], "gpt-4o-mini");
  assert.equal(headers["x-hi-reason"], "LOCAL_FIT");
  assert.equal(headers["x-hi-fallbacks"], "1");
  assert.match(
    headers["access-control-expose-headers"],
    /x-hi-provider, x-hi-model, x-hi-reason, x-hi-fallbacks/,
  );
});

Deno.test("a failed request's line is warn with its code, and error when the router failed it", () => {
  const exchange = new Exchange("/v1/messages", 0);
  exchange.fail(
    new RouterError(400, "INVALID_ROUTING_CONTRACT", "bad", {
      failureType: "validation_error",
      stage: "parse",
    }),
  );
  const sink = capturingSink();
  exchange.commit(sink, POLICY);
  const entry = requestLogEntry(sink.drafts[0], 400, 0);
  assert.equal(entry.level, "warn");
  assert.equal(entry.reason, "INVALID_ROUTING_CONTRACT");
  assert.equal(entry.provider, null);
  assert.equal(entry.path, "rejected");
  assert.equal(entry.attempt_failures, undefined);
  const broken = new Exchange("/v1/chat/completions", 0);
  broken.fail(
    new RouterError(500, "INTERNAL_ERROR", "x", { failureType: "uncaught_exception", stage: "execute" }),
  );
  broken.commit(sink, POLICY);
  assert.equal(requestLogEntry(sink.drafts[1], 500, 0).level, "error");
  // A record the writer lost after the provider answered: the client got 503 EDR_WRITE_FAILED.
  const answered = fallbackExchange();
  answered.commit(sink, POLICY);
  const lost = requestLogEntry(sink.drafts[2], 503, 0, "info", true);
  assert.equal(lost.level, "error");
  assert.equal(lost.reason, "EDR_WRITE_FAILED");
});

Deno.test("the primary reason: the failure's code, else the most telling factor behind the first candidate", () => {
  const base = ["CLASSIFICATION_INTERNAL", "LATENCY_INTERACTIVE"];
  const failed = { code: "NO_PROVIDER_AVAILABLE", type: "provider_error" };
  assert.equal(primaryReason(base, null, failed), "NO_PROVIDER_AVAILABLE");
  assert.equal(primaryReason(base, "local", { type: "client_disconnect" }), "CLIENT_DISCONNECT");
  assert.equal(primaryReason([...base, "MODEL_PINNED", "LOCAL_FIT"], "local", null), "MODEL_PINNED");
  assert.equal(
    primaryReason([...base, "LATENCY_INTERACTIVE_ROUTER_MODEL", "LOCAL_FIT"], "local", null),
    "LOCAL_FIT",
  );
  const unfit = [
    ...base,
    "LATENCY_INTERACTIVE_ROUTER_MODEL",
    "LOCAL_UNFIT",
    "LOCAL_OLLAMA_DOWN",
    "FALLBACK_TO_CLOUD",
  ];
  assert.equal(primaryReason(unfit, "anthropic", null), "LOCAL_UNFIT");
  const sensitive = [
    "CLASSIFICATION_SENSITIVE",
    "LATENCY_INTERACTIVE",
    "CLOUD_BLOCKED_BY_CLASSIFICATION",
    "LOCAL_FIT",
  ];
  assert.equal(primaryReason(sensitive, "local", null), "CLOUD_BLOCKED_BY_CLASSIFICATION");
  assert.equal(
    primaryReason([...base, "SLOT_BUSY_SPILL", "FALLBACK_TO_CLOUD"], "openai", null),
    "SLOT_BUSY_SPILL",
  );
  assert.equal(primaryReason([...base, "SLOT_BUSY_WAIT", "LOCAL_FIT"], "local", null), "SLOT_BUSY_WAIT");
  // A contract whose allowlist puts a cloud provider first, local fit behind it: the order is the reason.
  assert.equal(
    primaryReason([...base, "LOCAL_FIT", "REWRITE_SYSTEM_HOISTED"], "anthropic", null),
    ALLOWLIST_ORDER,
  );
  assert.equal(primaryReason([], null, null), null);
  assert.equal(fallbackCount([{ outcome: "fallback" }, { outcome: "fallback" }, { outcome: "ok" }]), 2);
});

Deno.test("logfmt quotes what needs quoting and prints null as empty", () => {
  const exchange = fallbackExchange();
  const sink = capturingSink();
  exchange.commit(sink, POLICY);
  const line = logfmtLine(requestLogEntry(sink.drafts[0], 200, 0));
  assert.match(line, /^ts=1970-01-01T00:00:00.000Z level=warn msg=request request_id=req_[0-9a-f]{32} /);
  assert.match(line, / model=gpt-4o-mini path=fallback status=200 reason=LOCAL_FIT fallbacks=1 /);
  assert.match(line, / attempt_failures=local:UPSTREAM_CONNECT_FAILED$/);
  const entry = {
    ...requestLogEntry(sink.drafts[0], 200, 0),
    model: 'odd "model" name',
    first_byte_ms: null,
  };
  assert.match(logfmtLine(entry), / model="odd \\"model\\" name" /);
  assert.match(logfmtLine(entry), / first_byte_ms= /);
});

Deno.test("HI_LOG levels", () => {
  assert.equal(parseLogLevel(undefined), "info");
  assert.equal(parseLogLevel(" WARN "), "warn");
  assert.throws(() => parseLogLevel("verbose"), /HI_LOG must be one of debug, info, warn, error, off/);
  assert.ok(logs("info", "warn"));
  assert.ok(!logs("warn", "info"));
  assert.ok(logs("debug", "info"));
  assert.ok(!logs("off", "error"));
});

Deno.test("the observer writes one line per request, even when told twice", () => {
  const lines: string[] = [];
  const observer = new RequestObserver({
    level: "info",
    write: (l) => lines.push(l),
    format: "json",
    tracer: null,
  });
  const exchange = fallbackExchange();
  exchange.commit(capturingSink(), POLICY);
  observer.answered(exchange, 200);
  observer.answered(exchange, 500);
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]).status, 200);
  const quiet = new RequestObserver({
    level: "error",
    write: (l) => lines.push(l),
    format: "json",
    tracer: null,
  });
  const other = fallbackExchange();
  other.commit(capturingSink(), POLICY);
  quiet.answered(other, 200);
  assert.equal(lines.length, 1, "a warn line is not printed at HI_LOG=error");
});

Deno.test("the buffered writer batches lines, finishes partial writes, and caps what a stuck console holds", async () => {
  const writes: string[] = [];
  const release = Promise.withResolvers<void>();
  const target = {
    async write(bytes: Uint8Array) {
      await release.promise;
      // Takes at most 5 bytes per call, as a full pipe may.
      const taken = bytes.subarray(0, 5);
      writes.push(new TextDecoder().decode(taken));
      return taken.length;
    },
  };
  const writer = new BufferedLineWriter(target, { maxQueuedBytes: 30 });
  writer.write("one");
  await Promise.resolve();
  writer.write("two");
  writer.write("three-is-longer-than-the-rest");
  writer.write("four");
  release.resolve();
  await writer.flush();
  assert.equal(writes.join(""), 'one\ntwo\n{"level":"warn","msg":"log lines dropped","dropped":1}\nfour\n');
});

Deno.test("without OTEL_DENO there is no tracer, so requests make no spans", () => {
  assert.equal(Deno.env.get("OTEL_DENO"), undefined, "run this test without OTEL_DENO");
  assert.equal(RequestTracer.whenEnabled(), null);
});

/** A span that keeps what the tracer set on it, for a test's fake tracer provider. */
class KeptSpan {
  readonly attributes: Record<string, unknown>;
  status: { code: number; message?: string } | null = null;
  readonly ended: Promise<void>;
  #end: () => void;
  constructor(readonly name: string, attributes: Record<string, unknown> | undefined) {
    this.attributes = { ...attributes };
    const { promise, resolve } = Promise.withResolvers<void>();
    this.ended = promise;
    this.#end = resolve;
  }
  isRecording() {
    return true;
  }
  spanContext() {
    return { traceId: "1".repeat(32), spanId: "1".repeat(16), traceFlags: 1 };
  }
  setAttribute(key: string, value: unknown) {
    this.attributes[key] = value;
    return this;
  }
  setStatus(status: { code: number; message?: string }) {
    this.status = status;
    return this;
  }
  end() {
    this.#end();
  }
}

Deno.test("a request whose record was lost ends its span as an error with EDR_WRITE_FAILED, as its log line does", async () => {
  const spans: KeptSpan[] = [];
  const provider = {
    getTracer: () => ({
      startSpan: (name: string, options?: { attributes?: Record<string, unknown> }) => {
        const span = new KeptSpan(name, options?.attributes);
        spans.push(span);
        return span;
      },
    }),
  };
  assert.ok(trace.setGlobalTracerProvider(provider as unknown as TracerProvider));
  try {
    const tracer = RequestTracer.whenEnabled();
    assert.ok(tracer);
    const sink = capturingSink();
    const answered = fallbackExchange();
    answered.commit(sink, POLICY);
    const draft = sink.drafts[0];
    const lost = Promise.reject(new Error("disk full"));
    tracer.record({ draft, status: 503, startMs: 0, endMs: 5, attemptStartsMs: [0, 1], record: lost });
    const request = spans.find((s) => s.name === "chat")!;
    await request.ended;
    assert.equal(request.attributes["hi.edr_written"], false);
    assert.equal(request.attributes["hi.reason"], requestLogEntry(draft, 503, 0, "info", true).reason);
    assert.equal(request.attributes["hi.reason"], "EDR_WRITE_FAILED");
    assert.equal(request.status?.code, SpanStatusCode.ERROR);
  } finally {
    trace.disable();
  }
});

Deno.test("the buffered writer sends lines of separate tasks within its batch window in one write", async () => {
  const writes: string[] = [];
  const target = {
    write(bytes: Uint8Array) {
      writes.push(new TextDecoder().decode(bytes));
      return Promise.resolve(bytes.length);
    },
  };
  const writer = new BufferedLineWriter(target, { batchMs: 60_000 });
  writer.write("first request");
  // A task boundary, as between two requests answered under load.
  await new Promise((resolve) => setTimeout(resolve, 0));
  writer.write("second request");
  assert.deepEqual(writes, [], "nothing is written before the batch window ends or a flush");
  await writer.flush();
  assert.deepEqual(writes, ["first request\nsecond request\n"]);
});
