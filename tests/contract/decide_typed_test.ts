/**
 * decide()'s typed answers say what its reason codes say: the slot disposition matches the first factor that
 * kept the request off a busy slot, a rejection's cause is `slot` exactly for the SLOT_ codes, and `pinned`
 * exactly when a MODEL_PINNED factor is there. Checked over every slot state, policy and host count, so
 * the pipeline can read the typed values where it used to parse the strings.
 */
import assert from "node:assert/strict";
import {
  BUILTIN_POLICY_SOURCE,
  decide,
  type DecisionInput,
  effectiveContract,
  parsePolicy,
  type SlotDisposition,
  type SlotView,
} from "../../lib/contract/mod.ts";
import { plainFeatures } from "./features.ts";

const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
const installed = [
  { name: "qwen3:8b", digest: "a".repeat(64), parameter_size_b: 8.2 },
  { name: "qwen3:32b", digest: "b".repeat(64), parameter_size_b: 32.8 },
];

/** What the request path made of the factors before decide() said it in types. */
function dispositionFromFactors(factors: string[]): SlotDisposition["kind"] {
  const first = factors.find((f) =>
    ["SLOT_BUSY_SPILL", "SLOT_QUEUE_FULL_SPILL", "SLOT_BUSY_REFUSE", "SLOT_QUEUE_FULL"].includes(f)
  );
  if (first === undefined) return factors.includes("SLOT_BUSY_WAIT") ? "wait" : "free";
  return first.endsWith("_SPILL") ? "spill" : "refuse";
}

Deno.test("decide(): the typed slot disposition, rejection cause and pin agree with the factors", () => {
  let checked = 0;
  const kinds = new Set<string>();
  for (const hostCount of [1, 2]) {
    for (const when_busy of ["wait", "spill", "refuse"] as const) {
      for (const [busy, queue_depth] of [[false, 0], [true, 0], [true, 1], [true, 2]] as const) {
        for (const model of ["auto", "qwen3:32b", "qwen3:8b", "gpt-4o-mini", "qwen3:1b"]) {
          for (const latency of ["interactive", "batch"] as const) {
            for (const classification of ["INTERNAL", "SECRET"] as const) {
              const slot: SlotView = { busy, queue_depth, max_queue: 2, when_busy };
              const health = { state: "fit" as const, reasons: [], installed };
              const input: DecisionInput = {
                contract: effectiveContract({ latency, classification }, policy),
                policy,
                health,
                slot,
                features: plainFeatures({ requested_model: model }),
                keys: { anthropic: true, openai: true },
              };
              if (hostCount === 2) {
                input.hosts = [
                  { host: "http://a:11434", health, slot },
                  { host: "http://b:11434", health, slot },
                ];
              }
              const d = decide(input);
              const what = JSON.stringify({ hostCount, when_busy, busy, queue_depth, model, latency });
              assert.equal(d.slot.kind, dispositionFromFactors(d.factors), what);
              if (d.slot.kind === "spill" || d.slot.kind === "refuse") {
                const queueFull = d.factors.includes("SLOT_QUEUE_FULL") ||
                  d.factors.includes("SLOT_QUEUE_FULL_SPILL");
                assert.equal(d.slot.reason, queueFull ? "queue_full" : "busy", what);
              }
              if (d.rejection !== null) {
                assert.equal(d.rejection.cause === "slot", d.rejection.code.startsWith("SLOT_"), what);
              }
              assert.equal(d.pinned, d.factors.some((f) => f.startsWith("MODEL_PINNED")), what);
              kinds.add(`${d.slot.kind}/${d.rejection?.cause ?? "-"}`);
              checked++;
            }
          }
        }
      }
    }
  }
  // The grid reaches every disposition and both causes.
  for (const kind of ["free/-", "wait/-", "spill/-", "refuse/slot", "free/policy"]) {
    assert.ok(kinds.has(kind), `${kind} not reached: ${[...kinds]}`);
  }
  assert.ok(checked > 0);
});
