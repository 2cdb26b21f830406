/**
 * What every stage of the request pipeline reads: the wiring (policy, health, slots, adapters, writer,
 * metrics) and what is derived from it once for the router's life.
 * @module
 */
import { type ProviderKeys, providerKeys } from "../config/mod.ts";
import type { LeaseReserver } from "../authority/mod.ts";
import type { Policy } from "../contract/mod.ts";
import type { HealthGate } from "../health/mod.ts";
import type { ProviderAdapter, ProviderName } from "../providers/mod.ts";
import type { HostSlot } from "../slot/mod.ts";
import type { LocalHost } from "./local_hosts.ts";
import type { EdrSink, Exchange } from "./exchange.ts";
import type { PolicyRef } from "./record.ts";
import type { Placement } from "./attempt.ts";

/** What the chat pipeline needs; lib/http/server.ts wires the real ones, tests may wire fakes. */
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
  metrics: PipelineMetrics;
  /** Environment lookup for issuer secrets. */
  secrets: Record<string, string | undefined>;
  /** Writes one operational log line (never a prompt or a secret). */
  log: (line: string) => void;
  /** The per-request log line and spans (none without). */
  observer?: AnswerObserver;
  /** Counts requests in flight; the server shares it with the EDR writer (default: a counter of its own). */
  inFlight?: InFlight;
  now?: () => number;
}

/** One finished request, as the metrics take it. */
export interface RequestObservation {
  /** A route template such as `/v1/chat/completions`, never a raw path (label cardinality). */
  endpoint: string;
  /** Which provider served (or was meant to serve) the request; `none` when nothing was called. */
  provider: ProviderName | "none";
  /** How the request ended from the router's point of view. */
  outcome: "primary" | "fallback" | "rejected" | "failed";
  status: number;
  durationSeconds: number;
}

/** How a wait for the heavy slot ended. */
export type SlotWaitOutcome = "acquired" | "timeout" | "aborted" | "queue_full";

/** The metrics the pipeline counts (lib/http/metrics.ts's `RouterMetrics` in the server). */
export interface PipelineMetrics {
  observeRequest(observation: RequestObservation): void;
  countFallback(from: string, to: string, reason: string): void;
  observeSlotWait(seconds: number, outcome: SlotWaitOutcome): void;
  countEdr(outcome: "written" | "failed"): void;
}

/** Told when a request was answered (lib/http/request_observer.ts: its log line and spans). */
export interface AnswerObserver {
  answered(exchange: Exchange, status: number): void;
}

/**
 * How many requests are in flight and not yet waiting on their EDR's write. The server wiring makes one
 * and gives it to the pipeline, which counts, and to the EDR writer, which reads it (a request that comes
 * alone may have its fdatasync run on the event loop), so the writer never calls into the pipeline.
 */
export class InFlight {
  count = 0;
}

/** The pipeline's wiring and what is derived from it once. */
export class Pipeline {
  readonly deps: ChatDeps;
  readonly policy: Policy;
  readonly policyRef: PolicyRef;
  /** Which cloud providers have a key: fixed for the router's life, so one object serves every record. */
  readonly keys: ProviderKeys;
  readonly now: () => number;
  /** With several local hosts: each by its base URL (null with one host). */
  readonly hostByUrl: Map<string, LocalHost> | null;
  readonly inFlight: InFlight;
  /** Where each provider's candidates run when they name no host (the first host for local). */
  readonly placements: Partial<Record<ProviderName, Placement>> = {};

  constructor(deps: ChatDeps) {
    this.deps = deps;
    this.policy = deps.policy;
    this.policyRef = { version: deps.policy.policy_version, hash: deps.policyHash };
    this.now = deps.now ?? Date.now;
    this.keys = Object.freeze(providerKeys((p) => deps.adapters[p] !== undefined));
    const hosts = deps.hosts;
    this.hostByUrl = hosts !== undefined && hosts.length > 1 ? new Map(hosts.map((h) => [h.url, h])) : null;
    this.inFlight = deps.inFlight ?? new InFlight();
    for (const [provider, adapter] of Object.entries(deps.adapters) as [ProviderName, ProviderAdapter][]) {
      if (adapter === undefined) continue;
      this.placements[provider] = Object.freeze({ adapter, health: deps.health, host: null, view: null });
    }
  }
}
