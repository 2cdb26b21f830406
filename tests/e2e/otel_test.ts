/**
 * OpenTelemetry through `deno task serve` as a user turns it on (`OTEL_DENO=true` and the standard
 * `OTEL_EXPORTER_OTLP_*` variables): a stand-in OTLP/HTTP collector (JSON encoding) on a free port receives
 * the request's span and one span per attempt, with the GenAI and router attributes, and `hi.request_id`
 * equal to the answer's x-request-id. The collector's port is not in the server's --allow-net: Deno's
 * exporter needs no permission.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { startServeHealthy } from "./serve_harness.ts";

/** An OTLP attribute value as the JSON encoding writes it. */
interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: OtlpValue }[];
  status?: { code?: number; message?: string };
}

/** A span with its attributes as a plain object (ints as numbers). */
interface Span extends OtlpSpan {
  attrs: Record<string, string | number | boolean | undefined>;
  service: string | undefined;
}

function plain(value: OtlpValue): string | number | boolean | undefined {
  if (value.intValue !== undefined) return Number(value.intValue);
  return value.stringValue ?? value.boolValue ?? value.doubleValue;
}

/** A collector that keeps every span posted to /v1/traces (and each /v1/logs body) and says when more came. */
function startCollector() {
  const spans: Span[] = [];
  /** The bodies posted to /v1/logs (console output Deno exports). */
  const logs: string[] = [];
  let arrived = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    const body = await request.text();
    if (new URL(request.url).pathname === "/v1/logs") logs.push(body);
    if (new URL(request.url).pathname === "/v1/traces") {
      assert.equal(request.headers.get("content-type"), "application/json");
      for (const resource of JSON.parse(body).resourceSpans ?? []) {
        const service = resource.resource?.attributes?.find((a: { key: string }) => a.key === "service.name");
        for (const scope of resource.scopeSpans ?? []) {
          for (const span of scope.spans as OtlpSpan[]) {
            const attrs = Object.fromEntries(span.attributes.map((a) => [a.key, plain(a.value)]));
            spans.push({ ...span, attrs, service: service?.value?.stringValue });
          }
        }
      }
    }
    arrived.resolve();
    arrived = Promise.withResolvers<void>();
    return Response.json({});
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    spans,
    logs,
    /** Resolves with what `find` returns once it is not undefined; rejects after `ms`. */
    async waitFor<T>(find: () => T | undefined, ms = 15_000): Promise<T> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"deadline">((resolve) =>
        timer = setTimeout(() => resolve("deadline"), ms)
      );
      try {
        for (;;) {
          const found = find();
          if (found !== undefined) return found;
          if (await Promise.race([arrived.promise, deadline]) === "deadline") {
            throw new Error(`not received in ${ms} ms; spans: ${JSON.stringify(spans.map((s) => s.name))}`);
          }
        }
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => server.shutdown(),
  };
}

Deno.test("with OTEL_DENO=true a collector receives the request span and its attempt spans", async () => {
  const collector = startCollector();
  const s = await startServeHealthy({
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "hi-otel-test",
      // Export each batch at once rather than after Deno's default 1 s delay.
      OTEL_BSP_SCHEDULE_DELAY: "50",
    },
  });
  try {
    // The server may reach its listen address and the providers only, not the collector.
    const args = Deno.readTextFileSync(`/proc/${s.serverPid}/cmdline`).split("\0");
    const allowNet = args.find((a) => a.startsWith("--allow-net="))!;
    assert.ok(!allowNet.includes(new URL(collector.url).host), allowNet);
    s.ollama.mode = "error500";
    const { data, response } = await s.client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "Answer even if local fails." }] })
      .withResponse();
    assert.ok(data.choices[0].message.content);
    const requestId = response.headers.get("x-request-id")!;
    const record = await s.record(requestId);

    const span = await collector.waitFor(() =>
      collector.spans.find((x) => x.attrs["hi.request_id"] === requestId && x.attrs["hi.edr_hash"])
    );
    assert.equal(span.name, "chat");
    assert.equal(span.service, "hi-otel-test");
    assert.equal(span.kind, 2, "SERVER");
    assert.equal(span.attrs["gen_ai.operation.name"], "chat");
    assert.equal(span.attrs["gen_ai.system"], "anthropic");
    assert.equal(span.attrs["gen_ai.request.model"], "auto");
    assert.equal(span.attrs["gen_ai.response.model"], record.decision.model);
    assert.equal(span.attrs["gen_ai.usage.input_tokens"], record.usage!.prompt_tokens);
    assert.equal(span.attrs["gen_ai.usage.output_tokens"], record.usage!.completion_tokens);
    assert.equal(span.attrs["hi.provider"], "anthropic");
    assert.equal(span.attrs["hi.fallbacks"], 1);
    assert.equal(span.attrs["hi.reason"], response.headers.get("x-hi-reason"));
    assert.equal(span.attrs["hi.edr_hash"], record.edr_hash);
    assert.equal(span.attrs["http.response.status_code"], 200);
    const durationNs = BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano);
    assert.ok(durationNs > 0n);
    assert.ok(BigInt(span.startTimeUnixNano) / 1_000_000n >= BigInt(Date.parse(record.timestamp)) - 1n);

    const attempts = await collector.waitFor(() => {
      const children = collector.spans.filter((x) => x.parentSpanId === span.spanId);
      return children.length === record.attempts.length ? children : undefined;
    });
    attempts.sort((a, b) => Number(a.attrs["hi.attempt"]) - Number(b.attrs["hi.attempt"]));
    assert.deepEqual(
      attempts.map((
        a,
      ) => [a.name, a.attrs["hi.provider"], a.attrs["gen_ai.request.model"], a.attrs["hi.outcome"]]),
      record.attempts.map((a) => [`attempt ${a.provider}`, a.provider, a.model, a.outcome]),
    );
    assert.equal(attempts[0].attrs["gen_ai.system"], "ollama");
    assert.equal(attempts[0].attrs["hi.failure_code"], record.attempts[0].error_code);
    assert.equal(attempts[0].status?.code, 2, "ERROR");
    assert.equal(attempts[1].attrs["hi.failure_code"], undefined);
    for (const attempt of attempts) {
      assert.equal(attempt.traceId, span.traceId);
      assert.ok(BigInt(attempt.startTimeUnixNano) >= BigInt(span.startTimeUnixNano));
      assert.ok(BigInt(attempt.endTimeUnixNano) <= BigInt(span.endTimeUnixNano));
    }
    s.ollama.mode = "normal";
    const anthropic = new Anthropic({ baseURL: s.url, apiKey: "unused", maxRetries: 0 });
    const { response: messagesResponse } = await anthropic.messages
      .create({ model: "auto", max_tokens: 64, messages: [{ role: "user", content: "Hello via messages." }] })
      .withResponse();
    const messagesId = messagesResponse.headers.get("x-request-id")!;
    const messages = await collector.waitFor(() =>
      collector.spans.find((x) => x.attrs["hi.request_id"] === messagesId && x.attrs["hi.edr_hash"])
    );
    assert.equal(messages.name, "messages");
    assert.equal(messages.attrs["gen_ai.system"], "ollama");
    assert.equal(messages.attrs["hi.fallbacks"], 0);
    assert.equal(messages.attrs["hi.reason"], "LOCAL_FIT");

    // Deno exports console output as logs (the banner); the request lines go to stdout directly, once.
    await collector.waitFor(() => collector.logs.some((b) => b.includes("listening on")) || undefined);
    assert.ok(
      !collector.logs.some((b) => b.includes(requestId)),
      "the request line is not exported as a log",
    );

    const spanText = JSON.stringify(collector.spans);
    for (const prompt of ["Answer even if local fails", "Hello via messages"]) {
      assert.ok(!spanText.includes(prompt), "no prompt text in any span");
    }
  } finally {
    await s.close();
    await collector.close();
  }
});
