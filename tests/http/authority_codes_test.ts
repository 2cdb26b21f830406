/**
 * Issue 20 acceptance, through `deno task serve`: with authority required, every malformed authority
 * block (each field × missing, wrong type, blank, out of range; plus non-objects and unknown fields) is a
 * 403 carrying that field's documented reason code, with one EDR whose failure is an authority
 * violation, on /v1/chat/completions and /v1/messages, sent in the body and in the x-authority header.
 * None of these requests reaches an upstream.
 */
import assert from "node:assert/strict";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import { MALFORMED_BLOCKS, type MalformedBlock, TABLE_MAX_TTL_S } from "../authority/malformed_blocks.ts";
import { policyWith, type ServedRouter, startServe } from "../e2e/serve_harness.ts";

type Endpoint = "/v1/chat/completions" | "/v1/messages";
type Carrier = "body" | "x-authority";

interface Answer {
  endpoint: Endpoint;
  carrier: Carrier;
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
  headers: Headers;
  requestId: string;
}

/** A well-formed unsigned block with a fresh lease id, granting both endpoints. */
function goodBlock(): Record<string, unknown> {
  return { issued_by: "ops", scope: ["chat:completions"], ttl: 60, lease_id: `lease-${crypto.randomUUID()}` };
}

/** Sends `authority` to `endpoint` in the given carrier, as a raw request a client could make. */
async function send(router: ServedRouter, endpoint: Endpoint, carrier: Carrier, authority: unknown) {
  const messages = [{ role: "user", content: "hello from the authority code table" }];
  const request: Record<string, unknown> = endpoint === "/v1/messages"
    ? { model: "auto", max_tokens: 32, messages }
    : { model: "auto", messages };
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (endpoint === "/v1/messages") headers["anthropic-version"] = "2023-06-01";
  if (carrier === "body") request.authority = authority;
  else headers["x-authority"] = JSON.stringify(authority);
  let response: Response;
  try {
    response = await fetch(`${router.url}${endpoint}`, {
      method: "POST",
      headers,
      body: JSON.stringify(request),
    });
  } catch (error) {
    throw new Error(`the router did not answer ${endpoint}; its output:\n${router.output()}`, {
      cause: error,
    });
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the assertions below say so.
  }
  const answer: Answer = {
    endpoint,
    carrier,
    status: response.status,
    body,
    headers: response.headers,
    requestId: response.headers.get("x-request-id") ?? "",
  };
  return answer;
}

/** Sends a block to both endpoints in both carriers, each built around its own fresh lease id. */
function sendEverywhere(router: ServedRouter, make: MalformedBlock["make"]): Promise<Answer[]> {
  const sends: Promise<Answer>[] = [];
  for (const endpoint of ["/v1/chat/completions", "/v1/messages"] as const) {
    for (const carrier of ["body", "x-authority"] as const) {
      sends.push(send(router, endpoint, carrier, make(goodBlock())));
    }
  }
  return Promise.all(sends);
}

/** Asserts the HTTP side of one refusal: 403, no retry, a request id, the dialect's error shape. */
function assertRefusedAnswer(answer: Answer, row: MalformedBlock): void {
  const where = `${answer.endpoint} via ${answer.carrier}`;
  assert.equal(
    answer.status,
    403,
    `${where}: expected 403 ${row.code}, got ${answer.status} ${JSON.stringify(answer.body)}`,
  );
  assert.equal(answer.headers.get("x-should-retry"), "false", where);
  assert.match(answer.requestId, /\S/, `${where}: x-request-id is missing`);
  assert.equal(answer.body.error.type, "permission_error", where);
  assert.equal(typeof answer.body.error.message, "string", where);
  // Both dialects carry the reason code in error.code.
  assert.equal(answer.body.error.code, row.code, `${where}: ${answer.body.error.message}`);
  if (answer.endpoint === "/v1/messages") assert.equal(answer.body.type, "error", where);
}

/** Asserts the one EDR of a refusal records an authority violation with the message the client got. */
function assertRefusalRecord(records: EdrRecord[], answer: Answer, row: MalformedBlock): void {
  const where = `${row.field} ${row.kind} (${row.name}) on ${answer.endpoint} via ${answer.carrier}`;
  const mine = records.filter((r) => r.request_id === answer.requestId);
  assert.equal(mine.length, 1, `${where}: expected one EDR for request ${answer.requestId}`);
  const record = mine[0];
  assert.equal(record.endpoint, answer.endpoint, where);
  assert.equal(record.failure?.type, "authority_violation", where);
  assert.equal(record.failure?.stage, "authorize", where);
  assert.equal(record.failure?.message, answer.body.error.message, where);
  assert.equal(record.decision.path, "rejected", where);
  assert.deepEqual(record.attempts, [], where);
  assert.equal(record.decision_inputs.authority, null, where);
}

Deno.test("every malformed authority block gets its field's code, a 403 and an EDR on both endpoints and carriers", async (t) => {
  const router = await startServe({
    policy: policyWith({ authority: { required: true, max_ttl_s: TABLE_MAX_TTL_S } }),
  });
  try {
    const upstreamCalls = () =>
      router.ollama.requests.length + router.openai.requests.length + router.anthropic.requests.length;
    const before = upstreamCalls();

    const refusals: { row: MalformedBlock; answers: Answer[] }[] = [];
    for (const row of MALFORMED_BLOCKS) {
      await t.step(`${row.code}: ${row.field} ${row.kind} (${row.name})`, async () => {
        const answers = await sendEverywhere(router, row.make);
        for (const answer of answers) assertRefusedAnswer(answer, row);
        // The same block gets the same refusal on both dialects and from both carriers; the chat
        // answer's message is the one whose code was checked above.
        const messages = new Set(answers.map((a) => a.body.error.message));
        assert.equal(messages.size, 1, `one message for one block, got ${[...messages].join(" | ")}`);
        refusals.push({ row, answers });
      });
    }

    await t.step("each refusal left one EDR recording an authority violation with its message", async () => {
      assert.equal(refusals.length, MALFORMED_BLOCKS.length, "every row was answered");
      // One read of the records for the whole table: EDR files follow the answers by a moment.
      const records = await router.records();
      for (const { row, answers } of refusals) {
        for (const answer of answers) assertRefusalRecord(records, answer, row);
      }
    });

    await t.step({
      name: "each refusal's EDR names its reason code in failure.code",
      fn: async () => {
        const records = await router.records();
        for (const { row, answers } of refusals) {
          for (const answer of answers) {
            const record = records.find((r) => r.request_id === answer.requestId);
            const failure = record?.failure as { code?: string } | null | undefined;
            assert.equal(failure?.code, row.code, `${row.name} on ${answer.endpoint} via ${answer.carrier}`);
          }
        }
      },
    });

    await t.step("none of the refused requests reached an upstream", () => {
      assert.equal(upstreamCalls(), before);
    });

    await t.step("a well-formed block is served on both endpoints from both carriers", async () => {
      const answers = await sendEverywhere(router, (good) => good);
      for (const answer of answers) {
        assert.equal(
          answer.status,
          200,
          `${answer.endpoint} via ${answer.carrier}: ${JSON.stringify(answer.body)}`,
        );
      }
      assert.equal(upstreamCalls(), before + answers.length, "each served request made one upstream call");
    });
  } finally {
    await router.close();
  }
});
