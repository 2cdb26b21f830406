/**
 * What the router says about each answered request besides its EDR: the decision headers on the answer,
 * one log line, and (when OpenTelemetry is on) its spans. Every one is read from the exchange or its EDR
 * draft through the same functions (`primaryReason`, `fallbackCount`), so they agree with the record.
 */
import { attemptStartedAt, type Exchange } from "../pipeline/mod.ts";
import {
  jsonLine,
  logfmtLine,
  type LogLevel,
  logs,
  type RequestLogEntry,
  requestLogEntry,
  undraftedLogEntry,
} from "./request_log.ts";
import type { RequestTracer } from "./tracing.ts";

export { decisionHeaders, EXPOSED_HEADERS } from "../pipeline/mod.ts";

/** Options of a `RequestObserver`. */
export interface RequestObserverOptions {
  /** `HI_LOG`: which request lines are written. */
  level: LogLevel;
  /** Where request lines go (one line, no newline). */
  write: (line: string) => void;
  /** logfmt for a person at a terminal, JSON lines for everything else. */
  format: "json" | "logfmt";
  /** Spans, when OpenTelemetry is on. */
  tracer: RequestTracer | null;
  now?: () => number;
}

export class RequestObserver {
  #options: RequestObserverOptions;
  #format: (entry: RequestLogEntry) => string;
  #now: () => number;

  constructor(options: RequestObserverOptions) {
    this.#options = options;
    this.#format = options.format === "logfmt" ? logfmtLine : jsonLine;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The request was answered with `status` (for a stream: it ended): its log line and spans. Called
   * after its record was handed to the writer; a second call for the same request does nothing.
   */
  answered(exchange: Exchange, status: number): void {
    if (exchange.observed) return;
    exchange.observed = true;
    const { level, tracer } = this.#options;
    if (level === "off" && !tracer) return;
    const now = this.#now();
    const draft = exchange.draft;
    if (level !== "off") {
      const entry = draft
        ? requestLogEntry(draft, status, now, level, exchange.recordLost)
        : undraftedLogEntry(exchange.requestId, exchange.endpoint, status, now);
      if (logs(level, entry.level)) this.#options.write(this.#format(entry));
    }
    if (tracer && draft) {
      const elapsedMs = performance.now() - exchange.startedAt;
      const epochOf = (perf: number | undefined) =>
        perf === undefined ? undefined : exchange.receivedAtMs + (perf - exchange.startedAt);
      tracer.record({
        draft,
        status,
        startMs: exchange.receivedAtMs,
        endMs: exchange.receivedAtMs + elapsedMs,
        attemptStartsMs: exchange.attempts.map((a) => epochOf(attemptStartedAt.get(a))),
        record: exchange.record,
      });
    }
  }
}
