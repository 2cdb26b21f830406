/**
 * The chat request pipeline: admit → route (decide) → attempt → relay (JSON or stream) → record. Each stage
 * is one module that owns one concern; lib/http/chat_handler.ts runs them in order.
 * @module
 */
export { admit, requireRecordable } from "./admit.ts";
export { Attempt, type Placement } from "./attempt.ts";
export { type AttemptCall, tryCandidates } from "./candidates.ts";
export { errorResponse, fail } from "./commit.ts";
export {
  type AnswerObserver,
  type ChatDeps,
  InFlight,
  Pipeline,
  type PipelineMetrics,
  type RequestObservation,
  type SlotWaitOutcome,
} from "./context.ts";
export { anthropicDialect, type Dialect, openAIDialect } from "./dialects.ts";
export { errorTypeForStatus, openAIErrorBody, RouterError } from "./errors.ts";
export { attemptStartedAt, type EdrSink, type Endpoint, Exchange, newRequestId } from "./exchange.ts";
export { bestSnapshot, type HostSnapshot, hostViews, type LocalHost, slotTotals } from "./local_hosts.ts";
export {
  ALLOWLIST_ORDER,
  decisionHeaders,
  EXPOSED_HEADERS,
  fallbackCount,
  primaryReason,
} from "./reasons.ts";
export { recordDraft, type RecordFacts, type RecordToWrite } from "./record.ts";
export { relayJson } from "./relay_json.ts";
export { relayStream } from "./relay_stream.ts";
export { route } from "./route.ts";
export { requestFeatures } from "./request_features.ts";
