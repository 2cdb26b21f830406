import { normalizeOllamaHost } from "../config/mod.ts";
import type { HealthPolicy } from "./schema.ts";
import { normalizeModelName, parseParameterSize } from "./parameter_size.ts";

/** Stable reason codes a snapshot may carry; they reach EDRs and `/readyz`, so never rename one. */
export type HealthReason =
  | "NOT_PROBED_YET"
  | "OLLAMA_UNREACHABLE"
  | "OLLAMA_PROBE_TIMEOUT"
  | "OLLAMA_BAD_RESPONSE"
  | "MEMORY_PRESSURE"
  | "SWAP_PRESSURE"
  | "CIRCUIT_OPEN";

/** Whether the local host may take work now. */
export type HealthState = "fit" | "unfit" | "unknown";

/** Circuit-breaker position. */
export type CircuitState = "closed" | "open" | "half_open";

/** What a request-path failure was, as reported to `recordFailure`. */
export type FailureKind = "connect" | "timeout" | "server_error" | "busy";

/** One installed Ollama model as the last successful `/api/tags` probe saw it. */
export interface InstalledModel {
  name: string;
  digest: string;
  parameter_size_b: number | null;
}

/** Host memory in bytes, the shape of `Deno.systemMemoryInfo()` the gate needs. */
export interface MemoryReading {
  total: number;
  available: number;
  swapTotal: number;
  swapFree: number;
}

/** The gate's view of the local host, read synchronously from memory on the request path. */
export interface HealthSnapshot {
  state: HealthState;
  reasons: readonly HealthReason[];
  /** Milliseconds since the last completed probe; -1 before the first one completes. */
  age_ms: number;
  circuit: CircuitState;
  ollama_version: string | null;
  memory_used_pct: number | null;
  swap_used_mb: number | null;
  /** Last known installed models (kept while the host is unreachable, for heavy-model decisions). */
  installed: readonly InstalledModel[];
  /** Models loaded in memory per `/api/ps`; null when that endpoint gave no usable answer. */
  loaded: readonly string[] | null;
}

/** Constructor options for `HealthGate`. */
export interface HealthGateOptions {
  /** Ollama base URL (`http://host:port`, or bare `host:port`). */
  ollamaUrl: string;
  policy: HealthPolicy;
  /** Model names the policy marks heavy regardless of their size. */
  heavyModels?: readonly string[];
  fetch?: typeof fetch;
  now?: () => number;
  readMemory?: () => MemoryReading;
  /** Schedules the next probe; returns a cancel function. */
  setTimer?: (fn: () => void, ms: number) => () => void;
  /** Called when state, circuit or reasons change; must not throw (errors are swallowed). */
  onChange?: (snapshot: HealthSnapshot) => void;
  /** A half-open trial that never reported back is considered abandoned after this long (default 120 s). */
  halfOpenTrialTtlMs?: number;
}

type ProbeAnswer =
  | { kind: "ok"; value: unknown }
  | { kind: "timeout" | "unreachable" | "bad_response" | "stopped" };

const EMPTY: readonly never[] = Object.freeze([]);
const NOT_PROBED: readonly HealthReason[] = Object.freeze(["NOT_PROBED_YET"]);
const MIB = 1024 * 1024;

function defaultSetTimer(fn: () => void, ms: number): () => void {
  const id = setTimeout(fn, ms);
  return () => clearTimeout(id);
}

function defaultReadMemory(): MemoryReading {
  const info = Deno.systemMemoryInfo();
  return { total: info.total, available: info.available, swapTotal: info.swapTotal, swapFree: info.swapFree };
}

/**
 * Local health gate: an active probe loop (Ollama version/tags/ps, host memory and swap) plus a circuit
 * breaker fed by the request path. `snapshot()` is synchronous so a probe never blocks a request.
 */
export class HealthGate {
  #url: string;
  #policy: HealthPolicy;
  #heavy: Set<string>;
  #fetch: typeof fetch;
  #now: () => number;
  #readMemory: () => MemoryReading;
  #setTimer: (fn: () => void, ms: number) => () => void;
  #onChange?: (snapshot: HealthSnapshot) => void;
  #trialTtlMs: number;

  // Probe results.
  #probedAt: number | null = null;
  #probeReasons: readonly HealthReason[] = EMPTY;
  #version: string | null = null;
  #memoryPct: number | null = null;
  #swapMb: number | null = null;
  #installed: readonly InstalledModel[] = EMPTY;
  /** Unix seconds of each installed model's `modified_at`; kept apart from the recorded health snapshot. */
  #modifiedAt: ReadonlyMap<string, number> = new Map();
  #byName = new Map<string, InstalledModel>();
  #loaded: readonly string[] | null = null;
  // Set when the host was seen unreachable (failed probe or connect failure); a good probe clears it.
  #hostWasDown = false;

  // Circuit breaker.
  #circuit: CircuitState = "closed";
  #consecutiveFailures = 0;
  #openedAt = 0;
  #halfOpenSuccesses = 0;
  #trialSince: number | null = null;

  // Probe loop.
  #running = false;
  #cancelTimer: (() => void) | null = null;
  #inflight: AbortController | null = null;
  #inflightDone: Promise<void> | null = null;
  #lastEmitted = "";

  /** Creates a gate; nothing runs until `start()` or `probeNow()`. */
  constructor(options: HealthGateOptions) {
    this.#url = normalizeOllamaHost(options.ollamaUrl);
    this.#policy = options.policy;
    this.#heavy = new Set((options.heavyModels ?? []).map(normalizeModelName));
    this.#fetch = options.fetch ?? fetch;
    this.#now = options.now ?? Date.now;
    this.#readMemory = options.readMemory ?? defaultReadMemory;
    this.#setTimer = options.setTimer ?? defaultSetTimer;
    this.#onChange = options.onChange;
    this.#trialTtlMs = options.halfOpenTrialTtlMs ?? 120_000;
    this.#lastEmitted = this.#changeKey(this.snapshot());
  }

  /** Starts the probe loop: one probe now, then one every `probe_interval_ms` after the last finished. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#tick();
  }

  /** Stops the loop, clears its timer and aborts an in-flight probe; resolves once that probe settled. */
  stop(): Promise<void> {
    this.#running = false;
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    this.#inflight?.abort();
    return this.#inflightDone ?? Promise.resolve();
  }

  /** Runs one probe now (after any in-flight one) and resolves when its result is in the snapshot. */
  async probeNow(): Promise<void> {
    while (this.#inflightDone) await this.#inflightDone;
    await this.#runProbe();
  }

  /** The current view of the host; synchronous and allocation-light, safe on every request. */
  snapshot(): HealthSnapshot {
    const circuit = this.#currentCircuit();
    const probed = this.#probedAt !== null;
    let reasons = probed ? this.#probeReasons : NOT_PROBED;
    if (circuit === "open") reasons = [...reasons, "CIRCUIT_OPEN"];
    let state: HealthState;
    if (reasons.length === 0) state = "fit";
    else if (reasons.length === 1 && reasons[0] === "NOT_PROBED_YET") state = "unknown";
    else state = "unfit";
    return {
      state,
      reasons,
      age_ms: probed ? Math.max(0, this.#now() - (this.#probedAt as number)) : -1,
      circuit,
      ollama_version: this.#version,
      memory_used_pct: this.#memoryPct,
      swap_used_mb: this.#swapMb,
      installed: this.#installed,
      loaded: this.#loaded,
    };
  }

  /** Reports a local request that succeeded (counts toward closing a half-open circuit). */
  recordSuccess(): void {
    this.#circuitSuccess();
    this.#emitIfChanged();
  }

  /** Reports a local request that failed; `failure_threshold` in a row open the circuit. */
  recordFailure(kind: FailureKind): void {
    if (kind === "connect") this.#hostWasDown = true;
    const circuit = this.#currentCircuit();
    if (circuit === "closed") {
      this.#consecutiveFailures++;
      if (this.#consecutiveFailures >= this.#policy.circuit.failure_threshold) this.#open();
    } else if (circuit === "half_open") {
      this.#open();
    }
    // While open, a late failure from a request that started earlier changes nothing.
    this.#emitIfChanged();
  }

  /**
   * In half-open, admits exactly one trial request to the local host at a time: true for the caller that
   * may go local, false for everyone else (they treat the host as unfit). False when not half-open.
   * The trial ends with `recordSuccess`, `recordFailure` or `releaseHalfOpenTrial`.
   */
  tryAcquireHalfOpenTrial(): boolean {
    if (this.#currentCircuit() !== "half_open") return false;
    if (this.#probedAt === null || this.#probeReasons.length > 0) return false;
    const now = this.#now();
    if (this.#trialSince !== null && now - this.#trialSince < this.#trialTtlMs) return false;
    this.#trialSince = now;
    return true;
  }

  /** Frees the half-open trial without a verdict (e.g. the client went away before the host answered). */
  releaseHalfOpenTrial(): void {
    this.#trialSince = null;
  }

  /** True when the policy lists the model as heavy or its installed size reaches the threshold. */
  isHeavy(model: string): boolean {
    const name = normalizeModelName(model);
    if (this.#heavy.has(name)) return true;
    const size = this.#byName.get(name)?.parameter_size_b;
    return size !== undefined && size !== null && size >= this.#policy.heavy_param_threshold_b;
  }

  /** The installed weights' digest for a model (for replay pinning), or null when unknown. */
  modelDigest(model: string): string | null {
    return this.#byName.get(normalizeModelName(model))?.digest ?? null;
  }

  /** Names of the models installed on the host, per the last successful probe. */
  installedModels(): string[] {
    return this.#installed.map((m) => m.name);
  }

  #tick(): void {
    this.#cancelTimer = null;
    if (!this.#running) return;
    const pending = this.#inflightDone ?? this.#runProbe();
    pending.then(() => {
      if (this.#running && this.#cancelTimer === null) {
        this.#cancelTimer = this.#setTimer(() => this.#tick(), this.#policy.probe_interval_ms);
      }
    });
  }

  #runProbe(): Promise<void> {
    const controller = new AbortController();
    this.#inflight = controller;
    const done = this.#probe(controller.signal)
      .catch(() => {/* a probe never throws past here: the loop must survive anything */})
      .finally(() => {
        if (this.#inflight === controller) {
          this.#inflight = null;
          this.#inflightDone = null;
        }
      });
    this.#inflightDone = done;
    return done;
  }

  async #probe(signal: AbortSignal): Promise<void> {
    const [version, tags, ps] = await Promise.all([
      this.#get("/api/version", signal),
      this.#get("/api/tags", signal),
      this.#get("/api/ps", signal),
    ]);
    if (signal.aborted) return;

    const reasons: HealthReason[] = [];
    let hostReason: HealthReason | null = null;
    for (const answer of [version, tags]) {
      if (answer.kind === "ok") continue;
      const reason: HealthReason = answer.kind === "timeout"
        ? "OLLAMA_PROBE_TIMEOUT"
        : answer.kind === "unreachable"
        ? "OLLAMA_UNREACHABLE"
        : "OLLAMA_BAD_RESPONSE";
      hostReason ??= reason;
    }
    const versionValue = version.kind === "ok"
      ? (version.value as { version?: unknown } | null)?.version
      : null;
    const installed = tags.kind === "ok" ? parseInstalled(tags.value) : null;
    if (hostReason === null && (typeof versionValue !== "string" || installed === null)) {
      hostReason = "OLLAMA_BAD_RESPONSE";
    }

    if (hostReason === null) {
      this.#version = versionValue as string;
      this.#setInstalled(installed!.models);
      this.#modifiedAt = installed!.modifiedAt;
      this.#loaded = ps.kind === "ok" ? parseLoaded(ps.value) : null;
    } else {
      reasons.push(hostReason);
      this.#version = null;
      this.#loaded = null;
    }

    this.#readPressure(reasons);
    this.#probeReasons = reasons.length === 0 ? EMPTY : Object.freeze(reasons);
    this.#probedAt = this.#now();

    if (hostReason === "OLLAMA_UNREACHABLE" || hostReason === "OLLAMA_PROBE_TIMEOUT") {
      this.#hostWasDown = true;
    } else if (hostReason === null && this.#hostWasDown) {
      // The host is back: count it toward closing so traffic returns within one probe interval.
      this.#hostWasDown = false;
      if (this.#currentCircuit() !== "closed") this.#circuitSuccess();
    }
    this.#emitIfChanged();
  }

  #readPressure(reasons: HealthReason[]): void {
    let memory: MemoryReading;
    try {
      memory = this.#readMemory();
    } catch {
      // Without --allow-sys the host's pressure is unknown; that alone must not take local traffic away.
      this.#memoryPct = null;
      this.#swapMb = null;
      return;
    }
    this.#memoryPct = memory.total > 0 ? ((memory.total - memory.available) / memory.total) * 100 : null;
    this.#swapMb = Math.max(0, memory.swapTotal - memory.swapFree) / MIB;
    if (this.#memoryPct !== null && this.#memoryPct > this.#policy.memory_used_pct_max) {
      reasons.push("MEMORY_PRESSURE");
    }
    if (this.#swapMb > this.#policy.swap_used_mb_max) reasons.push("SWAP_PRESSURE");
  }

  async #get(path: string, stop: AbortSignal): Promise<ProbeAnswer> {
    if (stop.aborted) return { kind: "stopped" };
    const controller = new AbortController();
    const onStop = () => controller.abort();
    stop.addEventListener("abort", onStop, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#policy.probe_timeout_ms);
    try {
      const response = await this.#fetch(`${this.#url}${path}`, { signal: controller.signal });
      const text = await response.text();
      if (!response.ok) return { kind: "bad_response" };
      try {
        return { kind: "ok", value: JSON.parse(text) };
      } catch {
        return { kind: "bad_response" };
      }
    } catch {
      if (timedOut) return { kind: "timeout" };
      if (stop.aborted) return { kind: "stopped" };
      return { kind: "unreachable" };
    } finally {
      clearTimeout(timer);
      stop.removeEventListener("abort", onStop);
    }
  }

  /** Installed models with the Unix seconds of their `modified_at` (null when Ollama gave none), for `GET /v1/models`. */
  installedCatalog(): { name: string; created: number | null }[] {
    return this.#installed.map((m) => ({ name: m.name, created: this.#modifiedAt.get(m.name) ?? null }));
  }

  #setInstalled(models: InstalledModel[]): void {
    this.#installed = Object.freeze(models.map((m) => Object.freeze(m)));
    const byName = new Map<string, InstalledModel>();
    for (const model of this.#installed) byName.set(normalizeModelName(model.name), model);
    this.#byName = byName;
  }

  #currentCircuit(): CircuitState {
    if (this.#circuit === "open" && this.#now() - this.#openedAt >= this.#policy.circuit.cooldown_ms) {
      this.#circuit = "half_open";
      this.#halfOpenSuccesses = 0;
      this.#trialSince = null;
      this.#emitIfChanged();
    }
    return this.#circuit;
  }

  #open(): void {
    this.#circuit = "open";
    this.#openedAt = this.#now();
    this.#consecutiveFailures = 0;
    this.#halfOpenSuccesses = 0;
    this.#trialSince = null;
  }

  #circuitSuccess(): void {
    const circuit = this.#currentCircuit();
    if (circuit === "closed") {
      this.#consecutiveFailures = 0;
      return;
    }
    // A success seen while still open (a late request, or the probe finding the host back) is evidence too.
    if (circuit === "open") {
      this.#circuit = "half_open";
      this.#halfOpenSuccesses = 0;
    }
    this.#trialSince = null;
    this.#halfOpenSuccesses++;
    if (this.#halfOpenSuccesses >= this.#policy.circuit.success_threshold) {
      this.#circuit = "closed";
      this.#consecutiveFailures = 0;
      this.#halfOpenSuccesses = 0;
    }
  }

  #changeKey(snapshot: HealthSnapshot): string {
    return `${snapshot.state}|${snapshot.circuit}|${snapshot.reasons.join(",")}`;
  }

  #emitIfChanged(): void {
    if (!this.#onChange) return;
    const snapshot = this.snapshot();
    const key = this.#changeKey(snapshot);
    if (key === this.#lastEmitted) return;
    this.#lastEmitted = key;
    try {
      this.#onChange(snapshot);
    } catch {
      // A metrics or logging hook must never break health tracking.
    }
  }
}

/** `/api/tags`' models, and the Unix seconds of each one's `modified_at` (kept out of the recorded snapshot). */
function parseInstalled(
  value: unknown,
): { models: InstalledModel[]; modifiedAt: Map<string, number> } | null {
  const models = (value as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) return null;
  const out: InstalledModel[] = [];
  const modifiedAt = new Map<string, number>();
  for (const entry of models) {
    if (entry === null || typeof entry !== "object") continue;
    const { name, model, digest, details, modified_at } = entry as Record<string, unknown>;
    const modelName = typeof name === "string" ? name : typeof model === "string" ? model : null;
    if (modelName === null) continue;
    out.push({
      name: modelName,
      digest: typeof digest === "string" ? digest.replace(/^sha256:/, "") : "",
      parameter_size_b: parseParameterSize((details as { parameter_size?: unknown } | null)?.parameter_size),
    });
    const ms = typeof modified_at === "string" ? Date.parse(modified_at) : NaN;
    if (Number.isFinite(ms)) modifiedAt.set(modelName, Math.floor(ms / 1000));
  }
  return { models: out, modifiedAt };
}

function parseLoaded(value: unknown): readonly string[] | null {
  const models = (value as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) return null;
  const names: string[] = [];
  for (const entry of models) {
    const name = (entry as { name?: unknown; model?: unknown } | null)?.name ??
      (entry as { model?: unknown } | null)?.model;
    if (typeof name === "string") names.push(name);
  }
  return Object.freeze(names);
}
