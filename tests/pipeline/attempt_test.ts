/**
 * The attempt gives back what it holds exactly once on every way a call ends: each heavy-slot lease it was
 * granted is released once, the half-open trial is returned, and the call's signal is aborted (which is
 * what frees the adapter's deadlines). Requests go through ChatHandler with scripted adapters, or a real
 * OllamaAdapter against a server that stalls, for the deadlines.
 */
import assert from "node:assert/strict";
import { Attempt } from "../../lib/pipeline/attempt.ts";
import { type Dialect, openAIDialect } from "../../lib/pipeline/dialects.ts";
import { Pipeline as PipelineContext } from "../../lib/pipeline/context.ts";
import { Exchange } from "../../lib/pipeline/exchange.ts";
import type { ChatRequest, StreamEvent } from "../../lib/canonical/mod.ts";
import { type CallOptions, OllamaAdapter } from "../../lib/providers/mod.ts";
import { chat, type Pipeline, type Script, startPipeline, upstreamError } from "./fakes.ts";

// Batch work goes to the heavy local model first (it holds the slot), then to the cloud.
const HEAVY = {
  model: "auto",
  messages: [{ role: "user", content: "hello" }],
  routing_contract: { latency: "batch" },
};

function assertReleasedOnce(p: Pipeline, leases: number): void {
  assert.deepEqual(p.slot.releases, Array(leases).fill(1), "each lease released exactly once");
  assert.equal(p.slot.snapshot().busy, false, "the slot is free");
  assert.equal(p.health.trials, 0, "no half-open trial held");
  for (const adapter of Object.values(p.adapters)) {
    for (const call of adapter.calls) {
      assert.ok(call.signal.aborted, `${adapter.provider}'s call signal ended`);
    }
  }
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met within 5 s");
    await new Promise((r) => setTimeout(r, 2));
  }
}

const cases: { name: string; stream: boolean; local: Script[]; served: string | null }[] = [
  { name: "success (JSON)", stream: false, local: [{ kind: "answer", text: "hi there" }], served: "local" },
  { name: "success (stream)", stream: true, local: [{ kind: "answer", text: "hi there" }], served: "local" },
  {
    name: "upstream error before the first byte, with fallback (JSON)",
    stream: false,
    local: [{ kind: "fail", error: upstreamError("UPSTREAM_SERVER_ERROR", 502, true) }],
    served: "anthropic",
  },
  {
    name: "upstream error before the first byte, with fallback (stream)",
    stream: true,
    local: [{ kind: "cut", before: 0, error: upstreamError("UPSTREAM_STREAM_CUT", 502, false) }],
    served: "anthropic",
  },
  {
    name: "error mid-stream",
    stream: true,
    local: [{ kind: "cut", before: 2, error: upstreamError("UPSTREAM_STREAM_CUT", 502, false) }],
    served: "local",
  },
];

for (const c of cases) {
  Deno.test(`attempt: ${c.name} releases the slot once`, async () => {
    const p = startPipeline({ local: c.local, circuit: "half_open" });
    const response = await chat(p, { ...HEAVY, stream: c.stream });
    await response.arrayBuffer();
    assert.equal(response.headers.get("x-hi-provider"), c.served);
    assert.equal(p.sink.drafts.length, 1);
    assertReleasedOnce(p, 1);
  });
}

Deno.test("attempt: a client that leaves mid-stream releases the slot once", async () => {
  const p = startPipeline({ local: [{ kind: "cut", before: 2, error: null }] });
  const client = new AbortController();
  const response = await chat(p, { ...HEAVY, stream: true }, { signal: client.signal });
  const reader = response.body!.getReader();
  await reader.read();
  assert.equal(p.slot.snapshot().busy, true, "the stream holds the slot");
  client.abort();
  await reader.cancel().catch(() => {});
  await until(() => p.sink.drafts.length === 1);
  assert.equal(p.sink.drafts[0].attempts[0].outcome, "aborted");
  assertReleasedOnce(p, 1);
});

Deno.test("attempt: a stream whose answer fails before it is made still releases the slot once", async () => {
  const p = startPipeline();
  const broken: Dialect = {
    ...openAIDialect,
    encoder: () => {
      throw new Error("the encoder failed");
    },
  };
  const request = new Request("http://router.test/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...HEAVY, stream: true }),
  });
  const response = await p.handler.handle(request, broken);
  assert.equal(response.status, 500);
  assert.equal((await response.json()).error.code, "INTERNAL_ERROR");
  assert.equal(p.sink.drafts.length, 1);
  assertReleasedOnce(p, 1);
});

/** The real Ollama adapter, keeping the options of each call. */
class RecordingOllama extends OllamaAdapter {
  readonly calls: CallOptions[] = [];
  override stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    this.calls.push(options);
    return super.stream(request, options);
  }
}

/** A fake Ollama that answers `/api/chat` with `chunks` NDJSON lines and then stalls until the call is dropped. */
function stallingOllama(chunks: number) {
  const dropped: Promise<void>[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    let done!: () => void;
    dropped.push(new Promise<void>((r) => done = r));
    request.signal.addEventListener("abort", () => done(), { once: true });
    const line = JSON.stringify({
      model: "qwen3:32b",
      message: { role: "assistant", content: "hi" },
      done: false,
    });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < chunks; i++) controller.enqueue(new TextEncoder().encode(line + "\n"));
      },
      cancel: () => done(),
    });
    return new Response(chunks === 0 ? new ReadableStream({ cancel: () => done() }) : body, {
      headers: { "content-type": "application/x-ndjson" },
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async close() {
      await Promise.all(dropped);
      await server.shutdown();
    },
  };
}

for (
  const [name, chunks] of [["first-byte deadline (fallback)", 0], ["idle deadline mid-stream", 1]] as const
) {
  Deno.test(`attempt: the ${name} releases the slot once`, async () => {
    const ollama = stallingOllama(chunks);
    // The signal the transport was given: with one controller per call it is the attempt's own.
    const transportSignals: AbortSignal[] = [];
    const adapter = new RecordingOllama({
      baseUrl: ollama.url,
      fetch: (url, init) => {
        transportSignals.push(init.signal!);
        return fetch(url, init as RequestInit);
      },
    });
    const p = startPipeline({
      localAdapter: adapter,
      policy: { limits: { first_byte_timeout_ms: 150, stream_idle_timeout_ms: 150 } },
    });
    try {
      const response = await chat(p, { ...HEAVY, stream: true });
      const text = await response.text();
      const draft = p.sink.drafts[0];
      if (chunks === 0) {
        assert.equal(response.headers.get("x-hi-provider"), "anthropic");
        assert.equal(draft.attempts[0].error_code, "UPSTREAM_TIMEOUT");
        assert.equal(draft.attempts[0].outcome, "fallback");
      } else {
        assert.equal(draft.attempts[0].outcome, "failed");
        assert.match(text, /UPSTREAM_TIMEOUT|error/);
      }
      assertReleasedOnce(p, 1);
      assert.equal(adapter.calls.length, 1);
      assert.deepEqual(transportSignals, [adapter.calls[0].signal], "one abort controller per call");
      assert.ok(adapter.calls[0].signal.aborted);
    } finally {
      await ollama.close();
    }
  });
}

Deno.test("attempt: release() is idempotent and `using` releases at the end of the block", async () => {
  const p = startPipeline();
  const context = new PipelineContext({
    policy: p.policy,
    policyHash: "0".repeat(64),
    health: p.health,
    slot: p.slot,
    adapters: p.adapters,
    edr: p.sink,
    leases: { reserve: () => Promise.resolve("reserved") },
    metrics: undefined as never,
    secrets: {},
    log: () => {},
  });
  const exchange = new Exchange("/v1/chat/completions", 0);
  exchange.admit({ model: "qwen3:32b", messages: [{ role: "user", content: "hi" }] });
  const candidate = { heavy: true, model: "qwen3:32b", provider: "local" as const };
  {
    using attempt = (await Attempt.open(context, exchange, new AbortController().signal, candidate, {
      adapter: p.adapters.local,
      health: p.health,
      host: null,
      view: null,
    }, undefined))!;
    assert.equal(p.slot.snapshot().busy, true);
    attempt.release();
    attempt.release();
    assert.deepEqual(p.slot.releases, [1]);
    assert.equal(attempt.options.signal.aborted, true);
  }
  assert.deepEqual(p.slot.releases, [1], "disposal after release() releases nothing twice");
  {
    using _attempt = await Attempt.open(context, exchange, new AbortController().signal, candidate, {
      adapter: p.adapters.local,
      health: p.health,
      host: null,
      view: null,
    }, undefined);
    assert.equal(p.slot.snapshot().busy, true);
  }
  assert.deepEqual(p.slot.releases, [1, 1]);
  assert.equal(p.slot.snapshot().busy, false);
});
