/**
 * An in-process request pipeline with scripted adapters, a health gate stand-in and a writer that keeps the
 * drafts it is handed: for unit tests of the pipeline's parts (what an e2e test cannot see: the draft
 * before sealing, how often a slot lease was released).
 */
import { BUILTIN_POLICY_SOURCE, parsePolicy, type Policy } from "../../lib/contract/mod.ts";
import type { EdrDraft, EdrRecord } from "../../lib/edr/mod.ts";
import type { HealthGate, HealthSnapshot } from "../../lib/health/mod.ts";
import { ChatHandler } from "../../lib/http/chat_handler.ts";
import { InFlight } from "../../lib/pipeline/mod.ts";
import { openAIDialect } from "../../lib/pipeline/dialects.ts";
import { RouterMetrics } from "../../lib/http/metrics.ts";
import type { ChatRequest, ChatResult, StreamEvent } from "../../lib/canonical/mod.ts";
import {
  type CallOptions,
  type ProviderAdapter,
  type ProviderName,
  UpstreamError,
  type WireProtocol,
} from "../../lib/providers/mod.ts";
import { HeavySlot, type SlotLease } from "../../lib/slot/mod.ts";

/** What a scripted adapter does for one call. */
export type Script =
  | { kind: "answer"; text: string }
  | { kind: "fail"; error: UpstreamError }
  /** Streams `before` text events, then errors with `error` (or waits for the abort when it is null). */
  | { kind: "cut"; before: number; error: UpstreamError | null };

/** An adapter that plays one script per call, in order (the last repeats). */
export class ScriptedAdapter implements ProviderAdapter {
  readonly provider: ProviderName;
  readonly protocol: WireProtocol;
  readonly calls: CallOptions[] = [];
  #scripts: Script[];

  constructor(provider: ProviderName, scripts: Script[]) {
    this.provider = provider;
    this.protocol = provider === "local"
      ? "ollama_chat"
      : provider === "openai"
      ? "openai_chat"
      : "anthropic_messages";
    this.#scripts = scripts;
  }

  #next(options: CallOptions): Script {
    this.calls.push(options);
    return this.#scripts.length > 1 ? this.#scripts.shift()! : this.#scripts[0];
  }

  complete(_request: ChatRequest, options: CallOptions): Promise<ChatResult> {
    const script = this.#next(options);
    if (script.kind === "fail") return Promise.reject(script.error);
    return Promise.resolve({
      model: options.model,
      content: script.kind === "answer" ? script.text : "",
      tool_calls: [],
      finish_reason: "stop",
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
  }

  stream(_request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const script = this.#next(options);
    if (script.kind === "fail") return Promise.reject(script.error);
    const events: StreamEvent[] = [];
    if (script.kind === "answer") {
      for (const word of script.text.split(" ")) events.push({ type: "text", text: word });
      events.push({
        type: "finish",
        finish_reason: "stop",
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
      });
    } else {
      for (let i = 0; i < script.before; i++) events.push({ type: "text", text: `part${i}` });
    }
    let i = 0;
    const signal = options.signal;
    return Promise.resolve(
      new ReadableStream<StreamEvent>({
        pull(controller) {
          if (i < events.length) {
            controller.enqueue(events[i++]);
            return;
          }
          if (script.kind === "cut") {
            if (script.error !== null) {
              controller.error(script.error);
              return;
            }
            // Hangs until the call is aborted (the client left, or a deadline).
            return new Promise<void>((resolve) => {
              const onAbort = () => {
                controller.error(
                  new UpstreamError("aborted", {
                    status: 499,
                    code: "CLIENT_ABORTED",
                    type: "client_error",
                    fallback: false,
                  }),
                );
                resolve();
              };
              if (signal.aborted) onAbort();
              else signal.addEventListener("abort", onAbort, { once: true });
            });
          }
        },
      }, { highWaterMark: 0 }),
    );
  }
}

/** An upstream error as an adapter raises it. */
export function upstreamError(code: string, status: number, fallback: boolean): UpstreamError {
  return new UpstreamError(`scripted ${code}`, {
    status,
    code,
    type: status >= 500 ? "server_error" : "invalid_request_error",
    fallback,
    upstreamStatus: status,
  });
}

/** A health gate stand-in: fit with both local models installed, circuit as given. */
export function fakeHealth(circuit: HealthSnapshot["circuit"] = "closed"): HealthGate & { trials: number } {
  const snapshot: HealthSnapshot = {
    state: "fit",
    reasons: [],
    age_ms: 5,
    circuit,
    ollama_version: "0.12.0",
    memory_used_pct: 40,
    swap_used_mb: 0,
    installed: [
      { name: "qwen3:32b", digest: "sha256:bbbb", parameter_size_b: 32 },
      { name: "qwen3:8b", digest: "sha256:aaaa", parameter_size_b: 8 },
    ],
    loaded: null,
  };
  const gate = {
    trials: 0,
    snapshot: () => snapshot,
    tryAcquireHalfOpenTrial: () => {
      gate.trials++;
      return true;
    },
    releaseHalfOpenTrial: () => {
      gate.trials--;
    },
    recordSuccess: () => {},
    recordFailure: () => {},
    modelDigest: (model: string) => snapshot.installed.find((m) => m.name === model)?.digest ?? null,
  };
  return gate as unknown as HealthGate & { trials: number };
}

/** A heavy slot that counts how often each lease it granted was released. */
export class CountingSlot extends HeavySlot {
  readonly releases: number[] = [];

  override tryAcquire(): SlotLease | null {
    const lease = super.tryAcquire();
    return lease === null ? null : this.#count(lease);
  }

  override async acquire(options?: Parameters<HeavySlot["acquire"]>[0]): Promise<SlotLease> {
    return this.#count(await super.acquire(options));
  }

  #count(lease: SlotLease): SlotLease {
    const index = this.releases.push(0) - 1;
    const release = lease.release.bind(lease);
    lease.release = () => {
      this.releases[index]++;
      release();
    };
    return lease;
  }
}

/** A writer stand-in that keeps each draft and seals nothing. */
export class DraftSink {
  readonly drafts: EdrDraft[] = [];
  health() {
    return { state: "ok" as const };
  }
  commit(draft: EdrDraft): Promise<EdrRecord> {
    this.drafts.push(structuredClone(draft));
    return Promise.resolve({ ...draft } as unknown as EdrRecord);
  }
}

export interface Pipeline {
  handler: ChatHandler;
  sink: DraftSink;
  slot: CountingSlot;
  health: HealthGate & { trials: number };
  adapters: Record<"local" | "openai" | "anthropic", ScriptedAdapter>;
  policy: Policy;
  /** What the EDR writer reads: requests in flight whose record was not handed over yet. */
  inFlight: InFlight;
}

/** A handler over scripted adapters (every provider answers "hello world" unless scripted otherwise). */
export function startPipeline(options: {
  local?: Script[];
  openai?: Script[];
  anthropic?: Script[];
  policy?: Record<string, unknown>;
  circuit?: HealthSnapshot["circuit"];
  /** A real adapter for local instead of the scripted one (e.g. an OllamaAdapter on a stalling server). */
  localAdapter?: ProviderAdapter;
} = {}): Pipeline {
  const policy = parsePolicy({ ...BUILTIN_POLICY_SOURCE, ...options.policy });
  const hello: Script[] = [{ kind: "answer", text: "hello world" }];
  const adapters = {
    local: new ScriptedAdapter("local", options.local ?? hello),
    openai: new ScriptedAdapter("openai", options.openai ?? hello),
    anthropic: new ScriptedAdapter("anthropic", options.anthropic ?? hello),
  };
  const sink = new DraftSink();
  const slot = new CountingSlot(policy.slot);
  const health = fakeHealth(options.circuit);
  const inFlight = new InFlight();
  const handler = new ChatHandler({
    policy,
    policyHash: "0".repeat(64),
    health,
    slot,
    adapters: options.localAdapter ? { ...adapters, local: options.localAdapter } : adapters,
    edr: sink,
    leases: { reserve: () => Promise.resolve("reserved") },
    metrics: new RouterMetrics(),
    secrets: {},
    log: () => {},
    inFlight,
    now: () => Date.UTC(2026, 10, 30, 10, 0, 0),
  });
  return { handler, sink, slot, health, adapters, policy, inFlight };
}

/** Sends one OpenAI-dialect request through the handler. */
export function chat(
  pipeline: Pipeline,
  body: Record<string, unknown>,
  init: { signal?: AbortSignal; headers?: Record<string, string> } = {},
): Promise<Response> {
  const request = new Request("http://router.test/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", "authorization": "Bearer sk-client", ...init.headers },
    body: JSON.stringify(body),
    signal: init.signal,
  });
  return pipeline.handler.handle(request, openAIDialect);
}

/** The draft with what changes from run to run (ids, clock readings) replaced by fixed marks. */
export function stableDraft(draft: EdrDraft): unknown {
  const copy = structuredClone(draft) as unknown as Record<string, unknown>;
  copy.request_id = "req_X";
  const timings = copy.timings as Record<string, number | null>;
  for (const key of Object.keys(timings)) if (timings[key] !== null) timings[key] = -1;
  for (const attempt of copy.attempts as Record<string, unknown>[]) attempt.duration_ms = -1;
  const slot = copy.slot as Record<string, unknown> | null;
  if (slot !== null && slot.waited_ms !== 0) slot.waited_ms = -1;
  return copy;
}
