/** The order of several local hosts for one request (docs/fleet.md), a part of decide(). */
import type { ModelPolicy } from "./policy.ts";
import type { Capability } from "./routing_contract.ts";
import { fitsCapabilities } from "./capabilities.ts";
import {
  type Candidate,
  type DecisionInput,
  type LocalHostView,
  type Rejection,
  SLOT_DISPOSITION,
  type SlotDisposition,
} from "./decision_types.ts";

/** What the local hosts offer a request: candidates in order, or why none can take it. */
export interface LocalHostsVerdict {
  candidates: Candidate[];
  /** A 429 to give when nothing else can serve (every fitting host's wait queue is full). */
  refusal: Rejection | null;
  /** `slot.when_busy` is `refuse` and every host that could run the heavy model is busy. */
  refuseBusy: boolean;
  /** What the hosts' heavy slots made of the request. */
  slot: SlotDisposition;
}

/**
 * The local candidates when there are several local hosts, in a fixed order (docs/fleet.md):
 * 1. a host is skipped when it is unfit, or when its last model list lacks the model (a host whose list
 *    is empty has not been probed yet and is not ruled out);
 * 2. the others keep their configured order, except that heavy work goes first to hosts whose heavy slot
 *    is free; hosts whose slot is busy follow, when `slot.when_busy` lets the request wait there (`wait`,
 *    or `spill` with nowhere else to go) and their queue has room.
 * Every candidate after the first is a fallback before any cloud candidate. Each skipped host is named
 * in `constraints` as `local_host_skipped:<host>:<REASON>`; the first candidate's health is the factor.
 */
export function localHostCandidates(
  input: DecisionInput,
  hosts: readonly LocalHostView[],
  model: ModelPolicy,
  pinned: ModelPolicy | null,
  needs: Capability[],
  canSpillToCloud: boolean,
  factors: string[],
  constraints: string[],
): LocalHostsVerdict {
  const verdict: LocalHostsVerdict = {
    candidates: [],
    refusal: null,
    refuseBusy: false,
    slot: SLOT_DISPOSITION.free,
  };
  if (!fitsCapabilities(model, needs, input.features, factors, constraints, pinned === model)) return verdict;
  const threshold = input.policy.health.heavy_param_threshold_b;
  const ready: { candidate: Candidate; host: LocalHostView }[] = [];
  const busy: { candidate: Candidate; host: LocalHostView }[] = [];
  let unfit = 0;
  let missing = 0;
  const skip = (host: LocalHostView, reason: string) =>
    constraints.push(`local_host_skipped:${host.host}:${reason}`);
  for (const host of hosts) {
    const { health, slot } = host;
    if (health.state === "unfit") {
      unfit++;
      skip(host, ["LOCAL_UNFIT", ...health.reasons.map((r) => `LOCAL_${r}`)].join("+"));
      continue;
    }
    const entry = health.installed.find((m) => m.name === model.name);
    if (health.installed.length > 0 && entry === undefined) {
      missing++;
      skip(host, "LOCAL_MODEL_NOT_INSTALLED");
      continue;
    }
    const heavy = model.heavy || (entry?.parameter_size_b ?? 0) >= threshold;
    // Members in RFC 8785 order, as the EDR keeps them.
    const candidate: Candidate = { heavy, local_host: host.host, model: model.name, provider: "local" };
    if (heavy && (slot.busy || slot.queue_depth > 0)) busy.push({ candidate, host });
    else ready.push({ candidate, host });
  }
  const chosen = [...ready];
  let refused = false;
  let queueFull = false;
  let spilled = false;
  for (const entry of busy) {
    const slot = entry.host.slot;
    if (slot.when_busy === "refuse") {
      refused = true;
      skip(entry.host, "SLOT_BUSY");
    } else if (slot.queue_depth >= slot.max_queue) {
      queueFull = true;
      skip(entry.host, "SLOT_QUEUE_FULL");
    } else if (slot.when_busy === "spill" && (ready.length > 0 || canSpillToCloud)) {
      spilled = true;
      skip(entry.host, "SLOT_BUSY_SPILL");
    } else {
      chosen.push(entry);
    }
  }
  if (chosen.length === 0) {
    if (unfit === hosts.length) factors.push("LOCAL_UNFIT");
    else if (unfit + missing === hosts.length) factors.push("LOCAL_MODEL_NOT_INSTALLED");
    else if (refused) {
      factors.push("SLOT_BUSY_REFUSE");
      verdict.refuseBusy = true;
      verdict.slot = SLOT_DISPOSITION.refuseBusy;
    } else if (queueFull && canSpillToCloud) {
      factors.push("SLOT_QUEUE_FULL_SPILL");
      verdict.slot = SLOT_DISPOSITION.spillQueueFull;
    } else if (queueFull) {
      factors.push("SLOT_QUEUE_FULL");
      verdict.slot = SLOT_DISPOSITION.refuseQueueFull;
      verdict.refusal = {
        cause: "slot",
        status: 429,
        code: "SLOT_QUEUE_FULL",
        message:
          "the heavy local model's wait queue is full on every local host; retry after the Retry-After delay",
      };
    } else if (spilled) {
      factors.push("SLOT_BUSY_SPILL");
      verdict.slot = SLOT_DISPOSITION.spillBusy;
    }
    return verdict;
  }
  const first = chosen[0];
  factors.push(first.host.health.state === "fit" ? "LOCAL_FIT" : "LOCAL_HEALTH_UNKNOWN");
  if (first.host !== hosts[0]) factors.push("LOCAL_HOST_SKIPPED");
  if (ready.length === 0) {
    factors.push("SLOT_BUSY_WAIT");
    verdict.slot = SLOT_DISPOSITION.wait;
  }
  verdict.candidates = chosen.map((c) => c.candidate);
  return verdict;
}
