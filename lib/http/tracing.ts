/**
 * OpenTelemetry spans through Deno's built-in exporter (`OTEL_DENO=true` and the standard `OTEL_*`
 * variables, read by the runtime itself). A request's spans are made when it is answered, from its EDR
 * draft, with the start and end times it had: nothing runs on the request path while it is served, and
 * with OpenTelemetry off (Deno then registers no tracer provider) no span object is ever made.
 */
import {
  type Attributes,
  context,
  type HrTime,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { EdrDraft, EdrRecord } from "../edr/mod.ts";
import { ROUTER_VERSION } from "../version.ts";
import { answeredFailure, fallbackCount, primaryReason } from "./request_log.ts";

/** `gen_ai.system` of each provider (the GenAI semantic conventions' well-known values). */
const GEN_AI_SYSTEM: Record<string, string> = { local: "ollama", openai: "openai", anthropic: "anthropic" };

/** What a request's spans are made from. Times are Unix epoch milliseconds. */
export interface TracedRequest {
  draft: EdrDraft;
  status: number;
  startMs: number;
  endMs: number;
  /** When each of `draft.attempts` started (undefined for one that never called its provider). */
  attemptStartsMs: (number | undefined)[];
  /** The sealed record, for `hi.edr_hash`; the request span ends when it settles. */
  record: Promise<EdrRecord> | null;
}

export class RequestTracer {
  #tracer: Tracer;

  private constructor(tracer: Tracer) {
    this.#tracer = tracer;
  }

  /**
   * A tracer when Deno exports telemetry (`OTEL_DENO=true`), else null. Asking needs no permission: a
   * span that is never ended is never exported, and records only when a real provider is registered.
   */
  static whenEnabled(): RequestTracer | null {
    const tracer = trace.getTracer("hybrid-inference", ROUTER_VERSION);
    return tracer.startSpan("probe").isRecording() ? new RequestTracer(tracer) : null;
  }

  /** The request's span (`chat` or `messages`) and one child span per attempt. */
  record(request: TracedRequest): void {
    const { draft, status } = request;
    const served = draft.decision.provider;
    const failure = draft.failure;
    const reason = primaryReason(draft.decision_factors, draft.candidates[0]?.provider, failure);
    const attributes: Attributes = {
      "gen_ai.operation.name": "chat",
      "hi.request_id": draft.request_id,
      "hi.endpoint": draft.endpoint,
      "hi.path": draft.decision.path,
      "hi.fallbacks": fallbackCount(draft.attempts),
      "hi.stream": draft.stream,
      "http.response.status_code": status,
    };
    const requested = draft.decision_inputs.features?.requested_model;
    if (requested) attributes["gen_ai.request.model"] = requested;
    if (served) {
      attributes["gen_ai.system"] = GEN_AI_SYSTEM[served];
      attributes["hi.provider"] = served;
    }
    if (draft.decision.model) attributes["gen_ai.response.model"] = draft.decision.model;
    if (reason) attributes["hi.reason"] = reason;
    const classification = draft.effective_contract?.classification;
    if (classification) attributes["hi.classification"] = classification;
    if (draft.usage) {
      attributes["gen_ai.usage.input_tokens"] = draft.usage.prompt_tokens;
      attributes["gen_ai.usage.output_tokens"] = draft.usage.completion_tokens;
    }
    if (draft.timings.first_byte_ms !== null) attributes["hi.first_byte_ms"] = draft.timings.first_byte_ms;
    const span = this.#tracer.startSpan(draft.endpoint === "/v1/messages" ? "messages" : "chat", {
      kind: SpanKind.SERVER,
      startTime: hrTime(request.startMs),
      attributes,
    });
    if (failure) span.setStatus({ code: SpanStatusCode.ERROR, message: reason ?? undefined });
    const parent = trace.setSpan(context.active(), span);
    draft.attempts.forEach((attempt, i) => {
      const start = request.attemptStartsMs[i] ?? request.endMs - attempt.duration_ms;
      const attemptAttributes: Attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": GEN_AI_SYSTEM[attempt.provider],
        "gen_ai.request.model": attempt.model,
        "hi.provider": attempt.provider,
        "hi.attempt": i + 1,
        "hi.outcome": attempt.outcome,
      };
      if (attempt.status !== null) attemptAttributes["http.response.status_code"] = attempt.status;
      if (attempt.error_code) attemptAttributes["hi.failure_code"] = attempt.error_code;
      const child = this.#tracer.startSpan(`attempt ${attempt.provider}`, {
        kind: SpanKind.CLIENT,
        startTime: hrTime(start),
        attributes: attemptAttributes,
      }, parent);
      if (attempt.outcome !== "ok") {
        child.setStatus({ code: SpanStatusCode.ERROR, message: attempt.error_code ?? attempt.outcome });
      }
      child.end(hrTime(start + attempt.duration_ms));
    });
    const end = hrTime(request.endMs);
    if (!request.record) {
      span.end(end);
      return;
    }
    request.record.then(
      (record) => span.setAttribute("hi.edr_hash", record.edr_hash),
      () => {
        // The client was told the request failed because its record was lost; the span says the same.
        span.setAttribute("hi.edr_written", false);
        const lost = answeredFailure(draft, true);
        const lostReason = primaryReason(draft.decision_factors, draft.candidates[0]?.provider, lost);
        if (lostReason) span.setAttribute("hi.reason", lostReason);
        span.setStatus({ code: SpanStatusCode.ERROR, message: lostReason ?? undefined });
      },
    ).finally(() => span.end(end));
  }
}

/** Epoch milliseconds as OpenTelemetry's [seconds, nanoseconds]. */
function hrTime(epochMs: number): HrTime {
  const seconds = Math.floor(epochMs / 1000);
  return [seconds, Math.round((epochMs - seconds * 1000) * 1e6)];
}
