import type { ProviderName } from "../config/mod.ts";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** Which provider served (or was meant to serve) a request; `none` when nothing was called. */
export type MetricsProvider = ProviderName | "none";

/** How a request ended from the router's point of view. */
export type RequestOutcome = "primary" | "fallback" | "rejected" | "failed";

/** How a wait for the heavy slot ended. */
export type SlotWaitOutcome = "acquired" | "timeout" | "aborted" | "queue_full";

/** One finished request, as `RouterMetrics.observeRequest` takes it. */
export interface RequestObservation {
  /** A route template such as `/v1/chat/completions`, never a raw path (label cardinality). */
  endpoint: string;
  provider: MetricsProvider;
  outcome: RequestOutcome;
  status: number;
  durationSeconds: number;
}

/** Constructor options for `RouterMetrics`. */
export interface RouterMetricsOptions {
  /** Also export Deno/Node process metrics (CPU, memory, event loop); off by default. */
  defaultMetrics?: boolean;
}

// 1 ms … 60 s: local light models answer in milliseconds, heavy local or cloud calls take many seconds.
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];
const SLOT_WAIT_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const HEALTH_STATES = ["fit", "unfit", "unknown"] as const;
const CIRCUIT_STATES = ["closed", "open", "half_open"] as const;

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

/**
 * The router's Prometheus metrics in a registry of their own (never the global one). Hot-path methods
 * reuse label children cached per label combination so a request costs a map lookup and an increment.
 */
export class RouterMetrics {
  #registry = new Registry();
  #requests: Counter<"endpoint" | "provider" | "outcome" | "status">;
  #duration: Histogram<"endpoint" | "provider" | "outcome">;
  #fallbacks: Counter<"from" | "to" | "reason">;
  #health: Gauge<"state">;
  #circuit: Gauge<"circuit">;
  #slotBusy: Gauge;
  #slotQueue: Gauge;
  #slotWait: Histogram<"outcome">;
  #edr: Counter<"outcome">;
  #edrDegraded: Gauge;
  #edrFilesWaiting: Gauge;
  #hostHealth: Gauge<"host" | "state">;
  #hostCircuit: Gauge<"host" | "circuit">;
  #hostSlotBusy: Gauge<"host">;
  #hostSlotQueue: Gauge<"host">;
  #shipping: { backlog: Gauge; errors: Counter; errorsSeen: number } | null = null;
  #requestChildren = new Map<string, { count: Inc; duration: Observe }>();
  #fallbackChildren = new Map<string, Inc>();
  #slotWaitChildren = new Map<string, Observe>();
  #edrChildren = new Map<string, Inc>();

  /** Creates the metrics and registers them in a private registry. */
  constructor(options: RouterMetricsOptions = {}) {
    const registers = [this.#registry];
    this.#requests = new Counter({
      name: "hi_requests_total",
      help: "Requests answered by the router, by endpoint, provider, outcome and HTTP status.",
      labelNames: ["endpoint", "provider", "outcome", "status"] as const,
      registers,
    });
    this.#duration = new Histogram({
      name: "hi_request_duration_seconds",
      help: "Time from request arrival to the end of the response, in seconds.",
      labelNames: ["endpoint", "provider", "outcome"] as const,
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.#fallbacks = new Counter({
      name: "hi_fallbacks_total",
      help: "Moves from one provider candidate to the next, by from, to and reason code.",
      labelNames: ["from", "to", "reason"] as const,
      registers,
    });
    this.#health = new Gauge({
      name: "hi_local_health_state",
      help: "Local health gate state: 1 for the current state label, 0 for the others.",
      labelNames: ["state"] as const,
      registers,
    });
    this.#circuit = new Gauge({
      name: "hi_local_circuit_state",
      help: "Local circuit breaker: 1 for the current position label, 0 for the others.",
      labelNames: ["circuit"] as const,
      registers,
    });
    this.#slotBusy = new Gauge({
      name: "hi_slot_busy",
      help:
        "Heavy local inference slots held: 1 while the slot is held (with several local hosts, how many are).",
      registers,
    });
    this.#slotQueue = new Gauge({
      name: "hi_slot_queue_depth",
      help:
        "Requests waiting for the heavy local inference slot (with several local hosts, for any of them).",
      registers,
    });
    this.#slotWait = new Histogram({
      name: "hi_slot_wait_seconds",
      help: "Time spent waiting for the heavy local slot, by how the wait ended.",
      labelNames: ["outcome"] as const,
      buckets: SLOT_WAIT_BUCKETS,
      registers,
    });
    this.#edr = new Counter({
      name: "hi_edr_writes_total",
      help: "Execution Decision Records made durable or lost, by outcome.",
      labelNames: ["outcome"] as const,
      registers,
    });
    this.#edrDegraded = new Gauge({
      name: "hi_edr_writer_degraded",
      help: "1 while the EDR writer cannot write its log (disk full or failing) and requests are refused.",
      registers,
    });
    this.#edrFilesWaiting = new Gauge({
      name: "hi_edr_files_waiting_retry",
      help: "Durable records whose per-request EDR file failed and waits for a retry.",
      registers,
    });
    this.#hostHealth = new Gauge({
      name: "hi_local_host_health_state",
      help: "Each local host's health gate state: 1 for the current state label, 0 for the others.",
      labelNames: ["host", "state"] as const,
      registers,
    });
    this.#hostCircuit = new Gauge({
      name: "hi_local_host_circuit_state",
      help: "Each local host's circuit breaker: 1 for the current position label, 0 for the others.",
      labelNames: ["host", "circuit"] as const,
      registers,
    });
    this.#hostSlotBusy = new Gauge({
      name: "hi_local_host_slot_busy",
      help: "1 while the local host's heavy inference slot is held.",
      labelNames: ["host"] as const,
      registers,
    });
    this.#hostSlotQueue = new Gauge({
      name: "hi_local_host_slot_queue_depth",
      help: "Requests waiting for the local host's heavy inference slot.",
      labelNames: ["host"] as const,
      registers,
    });
    // Start every state series at a known value so dashboards see all labels from the first scrape.
    this.setHealth("unknown", "closed");
    this.setSlot({ busy: false, queueDepth: 0 });
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.#registry, prefix: "hi_" });
  }

  /** Sets the EDR writer gauges (read at scrape time). */
  setEdrWriter(state: { degraded: boolean; filesWaitingRetry: number }): void {
    this.#edrDegraded.set(state.degraded ? 1 : 0);
    this.#edrFilesWaiting.set(state.filesWaitingRetry);
  }

  /**
   * Sets the gauges of EDR shipping to PostgreSQL (read at scrape time). They exist only when the router
   * ships (HI_DATABASE_URL set): a backlog of 0 would otherwise claim a database that is not there.
   */
  setEdrShipping(state: { backlog: number; errorsTotal: number }): void {
    this.#shipping ??= {
      backlog: new Gauge({
        name: "hi_edr_ship_backlog",
        help: "Durable EDRs of this replica not yet in PostgreSQL.",
        registers: [this.#registry],
      }),
      errors: new Counter({
        name: "hi_edr_ship_errors_total",
        help: "Failed attempts to ship EDRs to PostgreSQL (each is retried with backoff).",
        registers: [this.#registry],
      }),
      errorsSeen: 0,
    };
    this.#shipping.backlog.set(state.backlog);
    if (state.errorsTotal > this.#shipping.errorsSeen) {
      this.#shipping.errors.inc(state.errorsTotal - this.#shipping.errorsSeen);
      this.#shipping.errorsSeen = state.errorsTotal;
    }
  }

  /** The private registry, for tests or for adding a metric next to these. */
  get registry(): Registry {
    return this.#registry;
  }

  /** Counts a finished request and records its duration. */
  observeRequest(observation: RequestObservation): void {
    const { endpoint, provider, outcome, status } = observation;
    const key = `${endpoint}\u0000${provider}\u0000${outcome}\u0000${status}`;
    let child = this.#requestChildren.get(key);
    if (!child) {
      child = {
        count: this.#requests.labels(endpoint, provider, outcome, String(status)),
        duration: this.#duration.labels(endpoint, provider, outcome),
      };
      this.#requestChildren.set(key, child);
    }
    child.count.inc();
    child.duration.observe(observation.durationSeconds);
  }

  /** Counts one fallback from a provider to the next, with the stable reason code. */
  countFallback(from: string, to: string, reason: string): void {
    const key = `${from}\u0000${to}\u0000${reason}`;
    let child = this.#fallbackChildren.get(key);
    if (!child) {
      child = this.#fallbacks.labels(from, to, reason);
      this.#fallbackChildren.set(key, child);
    }
    child.inc();
  }

  /** Sets the health and circuit gauges: 1 for the current label, 0 for the rest. */
  setHealth(state: (typeof HEALTH_STATES)[number], circuit: (typeof CIRCUIT_STATES)[number]): void {
    for (const s of HEALTH_STATES) this.#health.labels(s).set(s === state ? 1 : 0);
    for (const c of CIRCUIT_STATES) this.#circuit.labels(c).set(c === circuit ? 1 : 0);
  }

  /**
   * Sets one local host's gauges (label `host`, its base URL), read at scrape time. The host-less gauges
   * above describe local work as a whole: with several hosts, the best host's health and the slots summed.
   */
  setLocalHost(
    host: string,
    now: {
      state: (typeof HEALTH_STATES)[number];
      circuit: (typeof CIRCUIT_STATES)[number];
      busy: boolean;
      queueDepth: number;
    },
  ): void {
    for (const s of HEALTH_STATES) this.#hostHealth.labels(host, s).set(s === now.state ? 1 : 0);
    for (const c of CIRCUIT_STATES) this.#hostCircuit.labels(host, c).set(c === now.circuit ? 1 : 0);
    this.#hostSlotBusy.labels(host).set(now.busy ? 1 : 0);
    this.#hostSlotQueue.labels(host).set(now.queueDepth);
  }

  /** Sets the heavy-slot gauges (with several local hosts: how many slots are held, and all waiters). */
  setSlot(slot: { busy: boolean | number; queueDepth: number }): void {
    this.#slotBusy.set(typeof slot.busy === "number" ? slot.busy : slot.busy ? 1 : 0);
    this.#slotQueue.set(slot.queueDepth);
  }

  /** Records how long a request waited for the heavy slot and how the wait ended. */
  observeSlotWait(seconds: number, outcome: SlotWaitOutcome): void {
    let child = this.#slotWaitChildren.get(outcome);
    if (!child) {
      child = this.#slotWait.labels(outcome);
      this.#slotWaitChildren.set(outcome, child);
    }
    child.observe(seconds);
  }

  /** Counts an EDR write by outcome. */
  countEdr(outcome: "written" | "failed"): void {
    let child = this.#edrChildren.get(outcome);
    if (!child) {
      child = this.#edr.labels(outcome);
      this.#edrChildren.set(outcome, child);
    }
    child.inc();
  }

  /** The Prometheus text exposition for `GET /metrics`. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.#registry.contentType, body: await this.#registry.metrics() };
  }
}
