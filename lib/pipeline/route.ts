/**
 * Routing: the snapshots decide() reads (each local host's health and heavy slot, the request's features,
 * which keys exist), the pure decide() itself, and what its typed answer means for the request: the
 * slot outcome when a busy slot kept it off the local host, a refusal as a `RouterError`, or the ordered
 * candidates to attempt.
 * @module
 */
import { type Candidate, decide } from "../contract/mod.ts";
import { RouterError } from "./errors.ts";
import { type HostSnapshot, hostViews } from "./local_hosts.ts";
import type { Pipeline } from "./context.ts";
import { type Exchange, heavySlotOutcome, round } from "./exchange.ts";
import { requestFeatures } from "./request_features.ts";

/** Decides where an admitted request may run: its candidates in order, or throws the refusal. */
export function route(pipeline: Pipeline, exchange: Exchange): Candidate[] {
  const { policy } = pipeline;
  exchange.stage = "decide";
  const decideStart = performance.now();
  const { health, slot } = pipeline.deps;
  let views: HostSnapshot[] | undefined;
  if (pipeline.hostByUrl !== null) {
    views = hostViews(pipeline.deps.hosts!);
    exchange.hosts = views;
  }
  const healthSnapshot = views === undefined ? health.snapshot() : views[0].health;
  exchange.health = healthSnapshot;
  exchange.slotSnapshot = views === undefined ? slot.snapshot() : views[0].slot;
  exchange.features = requestFeatures(exchange.chat!);
  exchange.keys = pipeline.keys;
  const decision = decide({
    contract: exchange.contract!,
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
    exchange.slotOutcome = heavySlotOutcome(
      keptOff === "spill" ? "spilled" : "refused",
      exchange.slotSnapshot.queue_depth,
      0,
    );
  }
  const rejection = decision.rejection;
  if (rejection) {
    const slotRefusal = rejection.cause === "slot";
    throw new RouterError(rejection.status, rejection.code, rejection.message, {
      param: rejection.param,
      failureType: slotRefusal ? "slot_refused" : "policy_rejection",
      stage: "decide",
      shouldRetry: slotRefusal,
      retryAfter: slotRefusal ? policy.slot.retry_after_s : undefined,
    });
  }
  return decision.candidates;
}
