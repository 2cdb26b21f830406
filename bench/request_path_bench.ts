/**
 * The router's per-request CPU work without I/O: body validation, contract, features, decide(), and
 * sealing the EDR (canonical JSON + hashes). `deno task bench`.
 */
import {
  BUILTIN_POLICY_SOURCE,
  decide,
  effectiveContract,
  parsePolicy,
  routingContractSchema,
} from "../lib/contract/mod.ts";
import { hashCanonical } from "../lib/edr/mod.ts";
import { chatRequestSchema } from "../lib/inbound/openai/mod.ts";
import { requestFeatures } from "../lib/pipeline/request_features.ts";
import { pathnameOf } from "../lib/http/router.ts";

const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
const body = {
  model: "auto",
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "Hello, who are you? Tell me about the weather in Paris today." },
  ],
  temperature: 0.2,
  max_tokens: 256,
};
const health = {
  state: "fit" as const,
  reasons: [],
  installed: [{ name: "qwen3:8b", digest: "a".repeat(64), parameter_size_b: 8.2 }],
};
const slot = { busy: false, queue_depth: 0, max_queue: 8, when_busy: "wait" as const };
const keys = { anthropic: true, openai: true };

Deno.bench("validate an OpenAI chat body (zod)", () => {
  chatRequestSchema.parse(body);
});

Deno.bench("validate a routing contract (zod)", () => {
  routingContractSchema.parse({ classification: "INTERNAL", latency: "interactive" });
});

Deno.bench("decide() with features and the effective contract", () => {
  const chat = chatRequestSchema.parse(body);
  decide({
    contract: effectiveContract(undefined, policy),
    policy,
    health,
    slot,
    features: requestFeatures(chat),
    keys,
  });
});

Deno.bench("input hash (RFC 8785 + SHA-256 of the request)", () => {
  hashCanonical(body);
});

// The route's path: read off the string for an inference path, against the URL parser (its plain twin).
const requestUrl = "http://127.0.0.1:8080/v1/chat/completions";
Deno.bench("fast path: pathnameOf an inference URL", { group: "pathname" }, () => {
  pathnameOf(requestUrl);
});
Deno.bench("fast path twin: new URL().pathname", { group: "pathname", baseline: true }, () => {
  new URL(requestUrl).pathname;
});
