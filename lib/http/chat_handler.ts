import { type ProviderKeys, providerKeys } from "../config/mod.ts";
import {
  checkAuthority,
  checkClientKey,
  type LeaseReserver,
  LeaseStoreUnavailableError,
} from "../authority/mod.ts";
import { type Candidate, decide, effectiveContract, type Policy } from "../contract/mod.ts";
import type { EdrAttempt } from "../edr/mod.ts";
import type { HealthGate } from "../health/mod.ts";
import type { StreamEvent } from "../canonical/mod.ts";
import type { ClientErrorInfo, ClientStreamEncoder } from "../inbound/mod.ts";
import {
  type CallOptions,
  type ProviderAdapter,
  type ProviderName,
  UpstreamError,
} from "../providers/mod.ts";
import { type HostSlot, SlotError, type SlotLease } from "../slot/mod.ts";
import type { Dialect } from "./dialects.ts";
import { type HostSnapshot, hostViews, type LocalHost } from "./local_hosts.ts";
import { concatBytes } from "../bytes.ts";
import { RouterError } from "./errors.ts";
import { attemptStartedAt, type EdrSink, Exchange, round } from "./exchange.ts";
import { decisionHeaders, type RequestObserver } from "./request_observer.ts";
import type { RouterMetrics } from "./metrics.ts";
import { requestFeatures } from "./request_features.ts";
import { clientGone, parseContract, readJsonBody } from "./request_input.ts";
import {
  assertCanonicalizable,
  assertCanonicalizableHeader,
  findUncanonicalizable,
  uncanonicalizableError,
} from "./canonical_input.ts";
import { NOT_READY, NOT_READY_MARK, OutputAssembler } from "./stream_output.ts";

/** What the chat pipeline needs; main.ts wires the real ones, tests may wire fakes. */
export interface ChatDeps {
  policy: Policy;
  policyHash: string;
  health: HealthGate;
  slot: HostSlot;
  adapters: Partial<Record<ProviderName, ProviderAdapter>>;
  /**
   * With several local hosts: every one, in configured order (`health`, `slot` and `adapters.local` are
   * then the first host's). Absent or a list of one: the single-host path.
   */
  hosts?: readonly LocalHost[];
  edr: EdrSink;
  leases: LeaseReserver;
  metrics: RouterMetrics;
  /** Environment lookup for issuer secrets. */
  secrets: Record<string, string | undefined>;
  /** Writes one operational log line (never a prompt or a secret). */
  log: (line: string) => void;
  /** The per-request log line and spans (none without). */
  observer?: RequestObserver;
  now?: () => number;
}

const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache",
  "connection": "keep-alive",
};

/** Runs `POST /v1/chat/completions` and `POST /v1/messages`: validate, authorize, decide, execute, record. */
export class ChatHandler {
  #deps: ChatDeps;
  #policyRef: { version: string; hash: string };
  /** Which cloud providers have a key: fixed for the router's life, so one object serves every record. */
  #keys: ProviderKeys;
  #now: () => number;
  /** With several local hosts: each by its base URL (null with one host). */
  #hostByUrl: Map<string, LocalHost> | null;
  /** Requests started whose EDR has not been handed to the writer yet. */
  #open = new Set<Exchange>();

  constructor(deps: ChatDeps) {
    this.#deps = deps;
    this.#policyRef = { version: deps.policy.policy_version, hash: deps.policyHash };
    this.#now = deps.now ?? Date.now;
    this.#keys = Object.freeze(providerKeys((p) => deps.adapters[p] !== undefined));
    const hosts = deps.hosts;
    this.#hostByUrl = hosts !== undefined && hosts.length > 1 ? new Map(hosts.map((h) => [h.url, h])) : null;
  }

  /** How many requests are in flight and not yet waiting on their EDR's write. */
  get openRequests(): number {
    return this.#open.size;
  }

  /** Handles one request; never throws (the last-resort path still answers and records). */
  async handle(request: Request, dialect: Dialect): Promise<Response> {
    const exchange = new Exchange(dialect.endpoint, this.#now());
    this.#open.add(exchange);
    try {
      return await this.#run(request, dialect, exchange);
    } catch (error) {
      if (error instanceof RouterError) return await this.#fail(exchange, dialect, error);
      const name = error instanceof Error ? error.name : typeof error;
      this.#deps.log(`uncaught ${name} at stage ${exchange.stage} request_id=${exchange.requestId}`);
      const failure = new RouterError(
        500,
        "INTERNAL_ERROR",
        `internal error at stage ${exchange.stage}; retry, and report the request id if it persists`,
        {
          failureType: "uncaught_exception",
          stage: exchange.stage,
        },
      );
      if (exchange.committed) {
        // The record is already written; the client still gets a clean error.
        return this.#errorResponse(exchange, dialect, failure);
      }
      return await this.#fail(exchange, dialect, failure);
    }
  }

  async #run(request: Request, dialect: Dialect, exchange: Exchange): Promise<Response> {
    const { policy } = this.#deps;
    this.#requireRecordable(exchange);
    const body = await readJsonBody(request, policy.limits.max_body_bytes, {
      timeoutMs: policy.limits.body_timeout_ms,
    });

    exchange.stage = "authenticate";
    const key = checkClientKey(request.headers, {
      keys: policy.client_keys,
      allowXApiKey: dialect.allowXApiKey,
    });
    if (!key.ok) {
      throw new RouterError(401, key.code, key.message, {
        failureType: "authentication_error",
        stage: "authenticate",
        shouldRetry: false,
      });
    }

    exchange.stage = "parse";
    const { routing_contract: rawContract, authority: rawAuthority, ...chatBody } = body;
    const contractHeader = request.headers.get("x-routing-contract");
    const authorityHeader = request.headers.get("x-authority");
    // Everything the record takes from the client must have a canonical form before anything is called.
    assertCanonicalizable(rawContract, "routing_contract");
    assertCanonicalizable(rawAuthority, "authority");
    assertCanonicalizableHeader(contractHeader, "x-routing-contract");
    assertCanonicalizableHeader(authorityHeader, "x-authority");
    const contract = parseContract(rawContract, contractHeader);
    const chat = dialect.parse(chatBody);
    try {
      exchange.admit(chat);
    } catch (error) {
      // The fast check is the canonicalizer itself; on failure, find the field as the client named it.
      const found = findUncanonicalizable(chatBody, "");
      if (found) throw uncanonicalizableError(found);
      throw error;
    }
    exchange.stream = chat.stream === true;
    exchange.contract = effectiveContract(contract, policy);
    exchange.capture = policy.capture_classifications.includes(exchange.contract.classification);

    exchange.stage = "authorize";
    const authority = await checkAuthority(rawAuthority, {
      required: exchange.contract.authority_required,
      neededScope: dialect.neededScope,
      policy: policy.authority,
      now: this.#now(),
      leases: this.#deps.leases,
      secrets: this.#deps.secrets,
      header: authorityHeader,
    }).catch(leaseStoreUnavailable);
    if (!authority.ok) {
      throw new RouterError(403, authority.code, authority.message, {
        failureType: "authority_violation",
        stage: "authorize",
        shouldRetry: false,
      });
    }
    exchange.authority = authority.summary;

    exchange.stage = "decide";
    const decideStart = performance.now();
    const { health, slot } = this.#deps;
    let views: HostSnapshot[] | undefined;
    if (this.#hostByUrl !== null) {
      views = hostViews(this.#deps.hosts!);
      exchange.hosts = views;
    }
    const healthSnapshot = views === undefined ? health.snapshot() : views[0].health;
    exchange.health = healthSnapshot;
    exchange.slotSnapshot = views === undefined ? slot.snapshot() : views[0].slot;
    exchange.features = requestFeatures(chat);
    exchange.keys = this.#keys;
    const decision = decide({
      contract: exchange.contract,
      policy,
      health: healthSnapshot,
      slot: exchange.slotSnapshot,
      features: exchange.features,
      keys: exchange.keys,
      hosts: views,
    });
    exchange.decision = decision;
    exchange.decideMs = round(performance.now() - decideStart);
    const keptOff = decision.slot.kind;
    if (keptOff === "spill" || keptOff === "refuse") {
      exchange.slotOutcome = {
        heavy: true,
        outcome: keptOff === "spill" ? "spilled" : "refused",
        queue_depth_at_entry: exchange.slotSnapshot.queue_depth,
        waited_ms: 0,
      };
    }
    if (decision.rejection) {
      const { status, code, message, param } = decision.rejection;
      const slotRefusal = decision.rejection.cause === "slot";
      throw new RouterError(status, code, message, {
        param,
        failureType: slotRefusal ? "slot_refused" : "policy_rejection",
        stage: "decide",
        shouldRetry: slotRefusal,
        retryAfter: slotRefusal ? policy.slot.retry_after_s : undefined,
      });
    }

    exchange.stage = "execute";
    // Checked again here: admission may have waited (a lease write), and no provider is called unless
    // the record can be written.
    this.#requireRecordable(exchange);
    return exchange.stream
      ? await this.#executeStream(request, dialect, exchange, decision.candidates)
      : await this.#executeComplete(request, dialect, exchange, decision.candidates);
  }

  async #executeComplete(
    request: Request,
    dialect: Dialect,
    exchange: Exchange,
    candidates: Candidate[],
  ): Promise<Response> {
    const result = await this.#tryCandidates(
      request.signal,
      exchange,
      candidates,
      async (adapter, options, slot) => {
        try {
          return await adapter.complete(exchange.chat!, options);
        } finally {
          slot?.release();
        }
      },
    );
    exchange.output = {
      content: result.content,
      tool_calls: result.tool_calls,
      finish_reason: result.finish_reason,
    };
    exchange.usage = result.usage;
    exchange.stage = "respond";
    await this.#durable(exchange);
    const meta = {
      id: dialect.responseId(exchange.requestId),
      created: Math.floor(exchange.receivedAtMs / 1000),
      model: result.model,
    };
    this.#observe(exchange, 200);
    return new Response(JSON.stringify(dialect.respond(result, meta)), {
      status: 200,
      headers: {
        ...JSON_HEADERS,
        "x-request-id": exchange.requestId,
        ...dialect.headers(exchange.requestId),
        ...decisionHeaders(exchange),
      },
    });
  }

  async #executeStream(
    request: Request,
    dialect: Dialect,
    exchange: Exchange,
    candidates: Candidate[],
  ): Promise<Response> {
    // One controller per attempt chain: aborting it (client gone) cancels the upstream fetch at once.
    const started = await this.#tryCandidates(
      request.signal,
      exchange,
      candidates,
      async (adapter, options, slot, endAttempt) => {
        try {
          const stream = await adapter.stream(exchange.chat!, options);
          const reader = stream.getReader();
          // Wait for the first event before answering the client: until a byte has gone out, a failure
          // can still fall back to the next candidate.
          let first: ReadableStreamReadResult<StreamEvent>;
          try {
            first = await reader.read();
          } catch (error) {
            reader.releaseLock();
            await stream.cancel().catch(() => {});
            throw error instanceof UpstreamError ? asFallbackWorthy(error) : error;
          }
          return { reader, first, slot, model: options.model, endAttempt };
        } catch (error) {
          slot?.release();
          throw error;
        }
      },
    );
    exchange.stage = "stream";
    const meta = {
      id: dialect.responseId(exchange.requestId),
      created: Math.floor(exchange.receivedAtMs / 1000),
      model: started.model,
    };
    const clientEncoder = dialect.encoder(
      meta,
      exchange.chat!.stream_options?.include_usage === true,
      exchange.features?.estimated_prompt_tokens ?? 0,
    );
    const body = this.#streamBody(exchange, clientEncoder, started, request.signal);
    return new Response(body, {
      status: 200,
      headers: {
        ...SSE_HEADERS,
        "x-request-id": exchange.requestId,
        ...dialect.headers(exchange.requestId),
        // Sent with the first byte: they name the candidate that is answering.
        ...decisionHeaders(exchange),
      },
    });
  }

  #streamBody(
    exchange: Exchange,
    clientEncoder: ClientStreamEncoder,
    started: {
      reader: ReadableStreamDefaultReader<StreamEvent>;
      first: ReadableStreamReadResult<StreamEvent>;
      slot: SlotLease | null;
      endAttempt: () => void;
    },
    clientSignal: AbortSignal,
  ): ReadableStream<Uint8Array> {
    const { reader, slot } = started;
    const assembler = new OutputAssembler();
    let pendingRead: Promise<ReadableStreamReadResult<StreamEvent>> = Promise.resolve(started.first);
    let opening: Uint8Array | null = clientEncoder.start();
    let finished = false;
    const attempt = exchange.attempts[exchange.attempts.length - 1];
    // The attempt's duration so far ran to its first event; the streaming time is added when it ends.
    const streamingSince = performance.now();
    const finish = (): void => {
      finished = true;
      slot?.release();
      started.endAttempt();
      clientSignal.removeEventListener("abort", onClientGone);
      if (attempt) attempt.duration_ms = round(attempt.duration_ms + performance.now() - streamingSince);
    };
    const recordDisconnect = async () => {
      exchange.failure ??= { ...STREAM_DISCONNECT };
      await this.#commitQuietly(exchange, 499);
    };
    const onClientGone = () => {
      if (finished) return;
      exchange.failure ??= { ...STREAM_DISCONNECT };
      if (attempt) attempt.outcome = "aborted";
      reader.cancel().catch(() => {});
    };
    clientSignal.addEventListener("abort", onClientGone, { once: true });

    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        // Everything already queued upstream goes out in one write: one chunk per event would cost a
        // syscall and a stream round trip each.
        const parts: Uint8Array[] = [];
        if (opening) {
          parts.push(opening);
          opening = null;
        }
        const flush = () => {
          // After the client went away the controller is closed; what it did not take is dropped.
          if (parts.length && !clientSignal.aborted) controller.enqueue(concatBytes(parts));
          parts.length = 0;
        };
        try {
          let next = await pendingRead;
          let event: StreamEvent;
          // The finish chunk waits for the record: a client that stops reading at finish_reason must
          // never hold an answer whose EDR was not made durable.
          let finishBytes: Uint8Array | null = null;
          while (true) {
            if (next.done) {
              throw new UpstreamError("the upstream stream ended without a finish event", {
                status: 502,
                code: "UPSTREAM_STREAM_CUT",
                type: "server_error",
                fallback: false,
              });
            }
            event = next.value;
            assembler.add(event);
            const bytes = clientEncoder.encode(event);
            if (event.type === "finish") {
              finishBytes = bytes;
              break;
            }
            parts.push(bytes);
            const read = reader.read();
            const ready = await Promise.race([read, NOT_READY]);
            if (ready === NOT_READY_MARK) {
              pendingRead = read;
              break;
            }
            next = ready as ReadableStreamReadResult<StreamEvent>;
          }
          if (exchange.firstByteMs === null) {
            exchange.firstByteMs = round(performance.now() - exchange.startedAt);
          }
          if (event.type !== "finish") {
            flush();
            return;
          }
          exchange.output = assembler.output(event.finish_reason);
          exchange.usage = event.usage;
          finish();
          reader.releaseLock();
          try {
            await this.#durable(exchange);
          } catch (error) {
            const failure = error instanceof RouterError ? error : edrFailure();
            parts.push(
              clientEncoder.error(errorInfo(failure)),
            );
            this.#observe(exchange, failure.status);
            flush();
            controller.close();
            return;
          }
          this.#observe(exchange, 200);
          parts.push(finishBytes!, clientEncoder.done());
          flush();
          controller.close();
        } catch (error) {
          if (finished) throw error;
          flush();
          finish();
          reader.cancel().catch(() => {});
          if (clientSignal.aborted || exchange.failure?.type === "client_disconnect") {
            await recordDisconnect();
            controller.close();
            return;
          }
          const upstream = error instanceof UpstreamError ? error : null;
          const failure = new RouterError(
            upstream?.status ?? 502,
            upstream?.code ?? "UPSTREAM_STREAM_CUT",
            upstream
              ? `the upstream failed mid-stream (${upstream.code}); retry the request`
              : "the stream failed; retry the request",
            {
              failureType: upstream?.code === "UPSTREAM_STREAM_CUT"
                ? "upstream_stream_cut"
                : "provider_error",
              stage: "stream",
            },
          );
          if (attempt) {
            attempt.outcome = "failed";
            attempt.error_code = failure.code;
          }
          exchange.fail(failure);
          exchange.output = null;
          await this.#commitQuietly(exchange, failure.status);
          controller.enqueue(clientEncoder.error(errorInfo(failure)));
          controller.close();
        }
      },
      cancel: async () => {
        onClientGone();
        if (!finished) finish();
        if (!exchange.committed) await recordDisconnect();
      },
    });
  }

  /** Tries candidates in order; moves on only for fallback-worthy failures. Every attempt is recorded. */
  async #tryCandidates<T>(
    clientSignal: AbortSignal,
    exchange: Exchange,
    candidates: Candidate[],
    call: (
      adapter: ProviderAdapter,
      options: CallOptions,
      slot: SlotLease | null,
      endAttempt: () => void,
    ) => Promise<T>,
  ): Promise<T> {
    const { policy, adapters, metrics } = this.#deps;
    let lastError: UpstreamError | RouterError | null = null;
    for (let i = 0; i < candidates.length; i++) {
      const candidate = candidates[i];
      const hasNext = i < candidates.length - 1;
      // With several local hosts a local candidate names its host; with one, the host is the only one.
      const host = candidate.local_host === undefined
        ? null
        : this.#hostByUrl?.get(candidate.local_host) ?? null;
      const view = host === null ? null : exchange.hosts!.find((v) => v.host === host.url)!;
      const health = host?.health ?? this.#deps.health;
      const adapter = host?.adapter ?? adapters[candidate.provider];
      if (!adapter) continue;
      const local = candidate.provider === "local";
      let trial = false;
      if (local && (view?.health ?? exchange.health)?.circuit === "half_open") {
        trial = health.tryAcquireHalfOpenTrial();
        if (!trial) {
          const skipped: EdrAttempt = {
            duration_ms: 0,
            error_code: "CIRCUIT_HALF_OPEN_TRIAL_BUSY",
            model: candidate.model,
            outcome: "fallback",
            provider: "local",
            status: null,
          };
          if (host !== null) skipped.local_host = host.url;
          exchange.attempts.push(skipped);
          continue;
        }
      }
      let lease: SlotLease | null = null;
      if (local && candidate.heavy) {
        // decide() read the slot free; a slot shared across replicas may have been taken since. Then
        // spill and refuse act as they would have on a busy slot: spill to the next candidate if there is
        // one (else wait), refuse at once whatever follows.
        const when = policy.slot.when_busy;
        try {
          lease = await this.#acquireSlot(
            clientSignal,
            exchange,
            host?.slot ?? this.#deps.slot,
            (view?.slot ?? exchange.slotSnapshot)?.queue_depth ?? 0,
            when === "wait" || (when === "spill" && !hasNext),
          );
        } catch (error) {
          if (trial) health.releaseHalfOpenTrial();
          if (!(error instanceof SlotError)) throw error;
          if (error.code === "SLOT_ABORTED") throw clientGone();
          const spill = hasNext && when !== "refuse";
          exchange.slotOutcome = {
            heavy: true,
            outcome: spill ? "spilled" : (error.code === "SLOT_WAIT_TIMEOUT" ? "timeout" : "refused"),
            queue_depth_at_entry: (view?.slot ?? exchange.slotSnapshot)?.queue_depth ?? 0,
            waited_ms: exchange.slotOutcome?.waited_ms ?? 0,
          };
          if (spill) {
            metrics.countFallback("local", candidates[i + 1].provider, error.code);
            continue;
          }
          throw slotRefusal(error, policy);
        }
      }
      const controller = new AbortController();
      const onAbort = () => controller.abort(clientSignal.reason);
      clientSignal.addEventListener("abort", onAbort, { once: true });
      // Ending the attempt's signal releases the adapter's timers; a stream ends it when it finishes.
      const endAttempt = () => {
        clientSignal.removeEventListener("abort", onAbort);
        controller.abort(ATTEMPT_OVER);
      };
      const options: CallOptions = {
        model: candidate.model,
        signal: controller.signal,
        firstByteTimeoutMs: policy.limits.first_byte_timeout_ms,
        streamIdleTimeoutMs: policy.limits.stream_idle_timeout_ms,
        totalTimeoutMs: policy.limits.total_timeout_ms,
        defaultMaxTokens: policy.defaults.max_tokens,
        keepAlive: local ? policy.ollama.keep_alive : undefined,
        contextWindow: local ? localContextWindow(policy, candidate.model) : undefined,
      };
      const attemptStart = performance.now();
      // Members in RFC 8785 order, as the EDR keeps them (see orderedCopy in exchange.ts).
      const attempt: EdrAttempt = {
        duration_ms: 0,
        error_code: null,
        model: candidate.model,
        outcome: "ok",
        provider: candidate.provider,
        status: null,
      };
      // Only with several hosts; the record then sorts this member into place.
      if (host !== null) attempt.local_host = host.url;
      exchange.attempts.push(attempt);
      attemptStartedAt.set(attempt, attemptStart);
      try {
        if (clientSignal.aborted) throw clientGone();
        const value = await call(adapter, options, lease, endAttempt);
        attempt.status = 200;
        attempt.duration_ms = round(performance.now() - attemptStart);
        if (local) {
          health.recordSuccess();
          if (trial) health.releaseHalfOpenTrial();
          exchange.modelDigest = health.modelDigest(candidate.model);
          exchange.numCtx = options.contextWindow ?? null;
        }
        exchange.served = host === null
          ? { provider: candidate.provider, model: candidate.model, protocol: adapter.protocol }
          : { provider: "local", model: candidate.model, protocol: adapter.protocol, local_host: host.url };
        if (view !== null) exchange.servedOllamaVersion = view.health.ollama_version;
        if (!exchange.stream) endAttempt();
        return value;
      } catch (error) {
        endAttempt();
        attempt.duration_ms = round(performance.now() - attemptStart);
        if (trial) health.releaseHalfOpenTrial();
        if (clientSignal.aborted || (error instanceof UpstreamError && error.code === "CLIENT_ABORTED")) {
          attempt.outcome = "aborted";
          attempt.error_code = "CLIENT_ABORTED";
          throw clientGone();
        }
        if (!(error instanceof UpstreamError)) throw error;
        attempt.status = error.upstreamStatus ?? null;
        attempt.error_code = error.code;
        if (local) recordLocalFailure(health, error);
        if (error.fallback && hasNext) {
          attempt.outcome = "fallback";
          metrics.countFallback(candidate.provider, candidates[i + 1].provider, error.code);
          lastError = error;
          continue;
        }
        attempt.outcome = "failed";
        // A field the local model cannot honour is the client's to fix, not the host being unavailable.
        const hostProblem = error.code !== "UNSUPPORTED_FIELD";
        throw local && error.fallback && hostProblem
          ? localUnavailable(exchange, error)
          : toRouterError(error);
      }
    }
    throw lastError instanceof UpstreamError ? toRouterError(lastError) : new RouterError(
      503,
      "NO_PROVIDER_AVAILABLE",
      "no provider could serve the request; check GET /readyz and the configured keys",
      { failureType: "provider_error", stage: "execute" },
    );
  }

  async #acquireSlot(
    signal: AbortSignal,
    exchange: Exchange,
    slot: HostSlot,
    queueDepthAtDecision: number,
    queue: boolean,
  ): Promise<SlotLease> {
    const { policy, metrics } = this.#deps;
    const immediate = slot.tryAcquire();
    if (immediate) {
      exchange.slotOutcome = { heavy: true, outcome: "acquired", queue_depth_at_entry: 0, waited_ms: 0 };
      return immediate;
    }
    const startWait = performance.now();
    try {
      const lease = await slot.acquire({ signal, maxWaitMs: policy.slot.max_wait_ms, queue });
      // A shared slot has no synchronous tryAcquire: its acquire says whether the holder had to queue.
      if (lease.queued) metrics.observeSlotWait(lease.waitedMs / 1000, "acquired");
      exchange.slotOutcome = {
        heavy: true,
        outcome: lease.queued ? "waited" : "acquired",
        queue_depth_at_entry: lease.queueDepthAtEntry,
        waited_ms: round(lease.waitedMs),
      };
      return lease;
    } catch (error) {
      const waited = round(performance.now() - startWait);
      if (error instanceof SlotError) {
        const outcome = error.code === "SLOT_WAIT_TIMEOUT"
          ? "timeout"
          : error.code === "SLOT_ABORTED"
          ? "aborted"
          : "queue_full";
        metrics.observeSlotWait(waited / 1000, outcome);
        // A client that left while waiting is a client_disconnect failure, not a slot outcome.
        exchange.slotOutcome = outcome === "aborted" ? null : {
          heavy: true,
          outcome: outcome === "timeout" ? "timeout" : "refused",
          waited_ms: waited,
          queue_depth_at_entry: queueDepthAtDecision,
        };
      }
      throw error;
    }
  }

  /** Throws the 503 `EDR_UNAVAILABLE` while the writer cannot make records durable. */
  #requireRecordable(exchange: Exchange): void {
    const state = this.#deps.edr.health();
    if (state.state === "ok") return;
    throw new RouterError(
      503,
      "EDR_UNAVAILABLE",
      "the decision record cannot be written now (the artifacts disk failed), so no provider was called; " +
        "the router retries the disk by itself: retry later, and see GET /readyz",
      { failureType: "uncaught_exception", stage: exchange.stage },
    );
  }

  /** Commits the record of a stream that can no longer report to its client; a failure is logged. */
  async #commitQuietly(exchange: Exchange, status: number): Promise<void> {
    await this.#commit(exchange).catch((e) => this.#edrLost(exchange, e));
    this.#observe(exchange, status);
  }

  /** Makes the record durable; a record that cannot be written fails the request closed. */
  async #durable(exchange: Exchange): Promise<void> {
    try {
      await this.#commit(exchange);
      this.#deps.metrics.countEdr("written");
    } catch (error) {
      this.#edrLost(exchange, error);
      throw edrFailure();
    }
  }

  /** Hands the record to the writer; from then on the request no longer counts as open. */
  #commit(exchange: Exchange): Promise<unknown> {
    try {
      return exchange.commit(this.#deps.edr, this.#policyRef);
    } finally {
      this.#open.delete(exchange);
    }
  }

  #edrLost(exchange: Exchange, error: unknown): void {
    this.#deps.metrics.countEdr("failed");
    const name = error instanceof Error ? error.name : typeof error;
    // While the writer is degraded it refuses every commit; it logged the disk error once already.
    if (name === "EdrUnavailableError") return;
    this.#deps.log(`edr write failed (${name}) request_id=${exchange.requestId}; the request failed closed`);
  }

  async #fail(exchange: Exchange, dialect: Dialect, error: RouterError): Promise<Response> {
    exchange.fail(error);
    try {
      await this.#durable(exchange);
    } catch (edrError) {
      // A refusal because records cannot be written says so itself; its own record is lost the same way.
      return this.#errorResponse(
        exchange,
        dialect,
        error.code === "EDR_UNAVAILABLE" ? error : edrError as RouterError,
      );
    }
    return this.#errorResponse(exchange, dialect, error);
  }

  #errorResponse(exchange: Exchange, dialect: Dialect, error: RouterError): Response {
    const headers: Record<string, string> = {
      ...JSON_HEADERS,
      "x-request-id": exchange.requestId,
      ...dialect.headers(exchange.requestId),
      ...decisionHeaders(exchange),
      "x-should-retry": String(error.shouldRetry),
      // The reason code, for clients whose SDK hides the error body's `code`.
      "x-hi-reason": error.code,
    };
    if (error.retryAfter !== undefined) headers["retry-after"] = String(error.retryAfter);
    this.#observe(exchange, error.status);
    return new Response(JSON.stringify(dialect.errorBody(error)), { status: error.status, headers });
  }

  #observe(exchange: Exchange, status: number): void {
    const served = exchange.served;
    const rejected = exchange.attempts.length === 0 && status >= 400;
    this.#deps.metrics.observeRequest({
      endpoint: exchange.endpoint,
      provider: served?.provider ?? "none",
      outcome: status >= 400
        ? (rejected ? "rejected" : "failed")
        : exchange.servedFirstCandidate()
        ? "primary"
        : "fallback",
      status,
      durationSeconds: (performance.now() - exchange.startedAt) / 1000,
    });
    this.#deps.observer?.answered(exchange, status);
  }
}

/** The answer to a heavy request that did not get the slot and has nowhere to spill. */
function slotRefusal(error: SlotError, policy: Policy): RouterError {
  const options = {
    failureType: "slot_refused" as const,
    stage: "execute" as const,
    retryAfter: policy.slot.retry_after_s,
  };
  switch (error.code) {
    case "SLOT_WAIT_TIMEOUT":
      return new RouterError(
        429,
        error.code,
        "the heavy local model stayed busy past the maximum wait; retry after the Retry-After delay",
        options,
      );
    case "SLOT_UNAVAILABLE":
      return new RouterError(
        503,
        error.code,
        "the heavy local model's shared slot (Redis) could not be reached; retry after the Retry-After delay",
        options,
      );
    default:
      // Under refuse, a slot taken by another replica after decide() is refused as decide() refuses it.
      return policy.slot.when_busy === "refuse"
        ? new RouterError(
          429,
          "SLOT_BUSY",
          "the heavy local model is busy; retry after the Retry-After delay",
          options,
        )
        : new RouterError(
          429,
          error.code,
          "the heavy local model's wait queue is full; retry after the Retry-After delay",
          options,
        );
  }
}

/** A shared lease store out of reach fails the request closed: 503, retryable, no provider called. */
function leaseStoreUnavailable(error: unknown): never {
  if (!(error instanceof LeaseStoreUnavailableError)) throw error;
  throw new RouterError(
    503,
    "LEASE_STORE_UNAVAILABLE",
    `${error.message}, so the lease could not be checked and no provider was called; retry shortly`,
    { failureType: "uncaught_exception", stage: "authorize", shouldRetry: true, retryAfter: 1 },
  );
}

/** The context window Ollama runs a local model with: the policy's, or the default for unlisted models. */
function localContextWindow(policy: Policy, model: string): number {
  const listed = policy.models.find((m) => m.provider === "local" && m.name === model);
  return listed?.context_window ?? policy.limits.unlisted_local_context_window;
}

const ATTEMPT_OVER = "the attempt is over";
const STREAM_DISCONNECT = {
  message: "the client disconnected before the stream ended",
  stage: "stream",
  type: "client_disconnect",
} as const;

function errorInfo(error: RouterError): ClientErrorInfo {
  return { message: error.message, type: error.type, code: error.code, status: error.status };
}

function edrFailure(): RouterError {
  return new RouterError(
    503,
    "EDR_WRITE_FAILED",
    "the decision record could not be made durable, so the request failed closed; retry later",
    {
      failureType: "uncaught_exception",
      stage: "respond",
    },
  );
}

/**
 * The last candidate was local and could not take the request (unreachable, timed out, busy, failing).
 * A request that may not leave the host gets the answer decide() gives once the health probe has seen
 * the same thing, so the client's answer does not depend on which of the two noticed first.
 */
function localUnavailable(exchange: Exchange, error: UpstreamError): RouterError {
  const classification = exchange.contract?.classification;
  if (classification !== "SENSITIVE" && classification !== "SECRET") return toRouterError(error);
  return new RouterError(
    503,
    `LOCAL_UNAVAILABLE_FOR_${classification}`,
    `${classification} requests run only on the local host, which cannot take this request now (${error.code}); retry when GET /readyz reports ready`,
    { failureType: "provider_error", stage: "execute" },
  );
}

function toRouterError(error: UpstreamError): RouterError {
  const failureType = error.code === "UPSTREAM_STREAM_CUT" ? "upstream_stream_cut" : "provider_error";
  const clientFault = error.status >= 400 && error.status < 500 && error.status !== 429;
  return new RouterError(error.status, error.code, error.message, {
    type: error.type,
    param: error.param,
    failureType: clientFault ? "validation_error" : failureType,
    stage: "execute",
    shouldRetry: !clientFault,
    retryAfter: error.retryAfter,
  });
}

/** A failure before any byte reached the client may still fall back, whatever the adapter assumed. */
function asFallbackWorthy(error: UpstreamError): UpstreamError {
  if (error.fallback || error.code === "CLIENT_ABORTED") return error;
  return new UpstreamError(error.message, {
    status: error.status,
    code: error.code,
    type: error.type,
    fallback: error.status >= 500 || error.status === 429,
    upstreamStatus: error.upstreamStatus,
    retryAfter: error.retryAfter,
    param: error.param,
  });
}

function recordLocalFailure(health: HealthGate, error: UpstreamError): void {
  if (error.code === "UPSTREAM_CONNECT_FAILED") health.recordFailure("connect");
  else if (error.code === "UPSTREAM_TIMEOUT") health.recordFailure("timeout");
  else if (error.code === "UPSTREAM_BUSY") health.recordFailure("busy");
  else if ((error.upstreamStatus ?? 0) >= 500) health.recordFailure("server_error");
}
