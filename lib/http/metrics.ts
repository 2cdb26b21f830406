import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { PipelineMetrics, RequestObservation, SlotWaitOutcome } from "../pipeline/mod.ts";

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
export class RouterMetrics implements PipelineMetrics {
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
    this.#requests = this.#counter(
      "hi_requests_total",
      "Requests answered by the router, by endpoint, provider, outcome and HTTP status.",
      ["endpoint", "provider", "outcome", "status"] as const,
    );
    this.#duration = this.#histogram(
      "hi_request_duration_seconds",
      "Time from request arrival to the end of the response, in seconds.",
      ["endpoint", "provider", "outcome"] as const,
      REQUEST_BUCKETS,
    );
    this.#fallbacks = this.#counter(
      "hi_fallbacks_total",
      "Moves from one provider candidate to the next, by from, to and reason code.",
      ["from", "to", "reason"] as const,
    );
    this.#health = this.#gauge(
      "hi_local_health_state",
      "Local health gate state: 1 for the current state label, 0 for the others.",
      ["state"] as const,
    );
    this.#circuit = this.#gauge(
      "hi_local_circuit_state",
      "Local circuit breaker: 1 for the current position label, 0 for the others.",
      ["circuit"] as const,
    );
    this.#slotBusy = this.#gauge(
      "hi_slot_busy",
      "Heavy local inference slots held: 1 while the slot is held (with several local hosts, how many are).",
    );
    this.#slotQueue = this.#gauge(
      "hi_slot_queue_depth",
      "Requests waiting for the heavy local inference slot (with several local hosts, for any of them).",
    );
    this.#slotWait = this.#histogram(
      "hi_slot_wait_seconds",
      "Time spent waiting for the heavy local slot, by how the wait ended.",
      ["outcome"] as const,
      SLOT_WAIT_BUCKETS,
    );
    this.#edr = this.#counter(
      "hi_edr_writes_total",
      "Execution Decision Records made durable or lost, by outcome.",
      ["outcome"] as const,
    );
    this.#edrDegraded = this.#gauge(
      "hi_edr_writer_degraded",
      "1 while the EDR writer cannot write its log (disk full or failing) and requests are refused.",
    );
    this.#edrFilesWaiting = this.#gauge(
      "hi_edr_files_waiting_retry",
      "Durable records whose per-request EDR file failed and waits for a retry.",
    );
    this.#hostHealth = this.#gauge(
      "hi_local_host_health_state",
      "Each local host's health gate state: 1 for the current state label, 0 for the others.",
      ["host", "state"] as const,
    );
    this.#hostCircuit = this.#gauge(
      "hi_local_host_circuit_state",
      "Each local host's circuit breaker: 1 for the current position label, 0 for the others.",
      ["host", "circuit"] as const,
    );
    this.#hostSlotBusy = this.#gauge(
      "hi_local_host_slot_busy",
      "1 while the local host's heavy inference slot is held.",
      ["host"] as const,
    );
    this.#hostSlotQueue = this.#gauge(
      "hi_local_host_slot_queue_depth",
      "Requests waiting for the local host's heavy inference slot.",
      ["host"] as const,
    );
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
      backlog: this.#gauge("hi_edr_ship_backlog", "Durable EDRs of this replica not yet in PostgreSQL."),
      errors: this.#counter(
        "hi_edr_ship_errors_total",
        "Failed attempts to ship EDRs to PostgreSQL (each is retried with backoff).",
      ),
      errorsSeen: 0,
    };
    this.#shipping.backlog.set(state.backlog);
    if (state.errorsTotal > this.#shipping.errorsSeen) {
      this.#shipping.errors.inc(state.errorsTotal - this.#shipping.errorsSeen);
      this.#shipping.errorsSeen = state.errorsTotal;
    }
  }

  // Every metric goes into the private registry only (never prom-client's global one).
  #counter<T extends string>(name: string, help: string, labelNames: readonly T[] = []): Counter<T> {
    return new Counter<T>({ name, help, labelNames, registers: [this.#registry] });
  }

  #gauge<T extends string>(name: string, help: string, labelNames: readonly T[] = []): Gauge<T> {
    return new Gauge<T>({ name, help, labelNames, registers: [this.#registry] });
  }

  #histogram<T extends string>(
    name: string,
    help: string,
    labelNames: readonly T[],
    buckets: number[],
  ): Histogram<T> {
    return new Histogram<T>({ name, help, labelNames, buckets, registers: [this.#registry] });
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
