/**
 * docs/protocols.md is the contract for every request field: each inbound schema field has a row, each
 * row names a field the router knows, the routed rows are exactly the fields decide() routes, and every
 * refused row is refused by name through `deno task serve`.
 */
import assert from "node:assert/strict";
import { FIELD_PROVIDERS } from "../../lib/contract/mod.ts";
import { chatRequestSchema, REFUSED_FIELDS } from "../../lib/inbound/openai/mod.ts";
import { anthropicMessagesRequestSchema } from "../../lib/inbound/anthropic/mod.ts";
import { ANTHROPIC_REFUSED_FIELDS } from "../../lib/inbound/anthropic/mod.ts";
import { startServe } from "../e2e/serve_harness.ts";

const ROUTER_FIELDS = ["authority", "routing_contract"];
const DOC = await Deno.readTextFile(new URL("../../docs/protocols.md", import.meta.url));

/** The rows of the table under the heading that starts with `heading`: field name and door. */
function tableRows(heading: string): { field: string; door: string }[] {
  const start = DOC.indexOf(`\n### ${heading}`);
  assert.ok(start >= 0, `docs/protocols.md has no "### ${heading}" section`);
  const end = DOC.indexOf("\n#", start + 1);
  const rows: { field: string; door: string }[] = [];
  for (const line of DOC.slice(start, end < 0 ? undefined : end).split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    const field = /^`([a-z_]+)`$/.exec(cells[1] ?? "")?.[1];
    if (field) rows.push({ field, door: cells[2] });
  }
  return rows;
}

const sorted = (values: Iterable<string>) => [...values].sort();

Deno.test("docs/protocols.md has one row for every field the router knows", async (t) => {
  const openai = tableRows("OpenAI chat completions");
  const anthropic = tableRows("Anthropic Messages");

  await t.step(
    "every OpenAI field the schema carries or refuses has exactly one row, and no other row",
    () => {
      const known = [
        ...Object.keys(chatRequestSchema.shape),
        ...Object.keys(REFUSED_FIELDS),
        ...ROUTER_FIELDS,
      ];
      assert.deepEqual(sorted(openai.map((r) => r.field)), sorted(known));
    },
  );

  await t.step(
    "every Anthropic field the inbound schema accepts has exactly one row, and no other row",
    () => {
      const known = [
        ...Object.keys(anthropicMessagesRequestSchema.shape),
        ...Object.keys(ANTHROPIC_REFUSED_FIELDS),
        ...ROUTER_FIELDS,
      ];
      assert.deepEqual(sorted(anthropic.map((r) => r.field)), sorted(known));
    },
  );

  await t.step(
    "every door is one of the rule's, and the refused and routed rows are what the code does",
    () => {
      for (const row of [...openai, ...anthropic]) {
        assert.ok(["carried", "refused", "routed", "router"].includes(row.door), `${row.field}: ${row.door}`);
      }
      assert.deepEqual(
        sorted(openai.filter((r) => r.door === "refused").map((r) => r.field)),
        sorted(Object.keys(REFUSED_FIELDS)),
      );
      assert.deepEqual(
        sorted(anthropic.filter((r) => r.door === "refused").map((r) => r.field)),
        sorted(Object.keys(ANTHROPIC_REFUSED_FIELDS)),
      );
      assert.deepEqual(
        sorted(new Set([...openai, ...anthropic].filter((r) => r.door === "routed").map((r) => r.field))),
        sorted(Object.keys(FIELD_PROVIDERS)),
      );
      assert.deepEqual(sorted(openai.filter((r) => r.door === "router").map((r) => r.field)), ROUTER_FIELDS);
    },
  );
});

Deno.test("fields refused or routed by the table behave so through deno task serve", async (t) => {
  const router = await startServe();
  const url = `${router.url}/v1/chat/completions`;
  const base = { model: "auto", messages: [{ role: "user", content: "hello there" }] };
  const post = async (body: Record<string, unknown>) => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      requestId: response.headers.get("x-request-id") ?? "",
      body: await response.json(),
    };
  };
  const upstreamCalls = () =>
    router.ollama.requests.length + router.openai.requests.length + router.anthropic.requests.length;
  try {
    const refused = [
      ...tableRows("OpenAI chat completions").filter((r) => r.door === "refused").map((r) => r.field),
      "frobnicate",
    ];
    for (const field of refused) {
      await t.step(
        `${field} is a 400 UNSUPPORTED_FIELD naming it, with one EDR and no provider called`,
        async () => {
          const before = upstreamCalls();
          const answer = await post({ ...base, [field]: { x: 1 } });
          assert.equal(answer.status, 400);
          assert.equal(answer.body.error.code, "UNSUPPORTED_FIELD");
          assert.equal(answer.body.error.param, field);
          assert.equal(answer.body.error.type, "invalid_request_error");
          assert.match(answer.body.error.message, new RegExp(`^${field} `));
          assert.equal(upstreamCalls(), before);
          const record = await router.record(answer.requestId);
          assert.equal(record.failure?.code, "UNSUPPORTED_FIELD");
          assert.ok(!JSON.stringify(record).includes("frobnicate"), "the record holds no unknown field name");
        },
      );
    }

    const anthropicRefused = [
      ...tableRows("Anthropic Messages").filter((r) => r.door === "refused").map((r) => r.field),
      "frobnicate",
    ];
    for (const field of anthropicRefused) {
      await t.step(
        `${field} on /v1/messages is a 400 UNSUPPORTED_FIELD naming it, with one EDR and no provider called`,
        async () => {
          const before = upstreamCalls();
          const response = await fetch(`${router.url}/v1/messages`, {
            method: "POST",
            headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
            body: JSON.stringify({ ...base, max_tokens: 16, [field]: { x: 1 } }),
          });
          const body = await response.json();
          assert.equal(response.status, 400);
          assert.equal(body.error.type, "invalid_request_error");
          assert.equal(body.error.code, "UNSUPPORTED_FIELD");
          assert.equal(body.error.param, field);
          assert.match(body.error.message, new RegExp(`^${field} `));
          assert.equal(upstreamCalls(), before);
          const record = await router.record(response.headers.get("x-request-id") ?? "");
          assert.equal(record.failure?.code, "UNSUPPORTED_FIELD");
          assert.ok(!JSON.stringify(record).includes("frobnicate"), "the record holds no unknown field name");
        },
      );
    }

    await t.step(
      "logprobs: true is served by OpenAI, which receives it; the EDR says why local was skipped",
      async () => {
        const answer = await post({ ...base, logprobs: true, top_logprobs: 2 });
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        const sent = router.openai.requests.at(-1) as Record<string, unknown>;
        assert.equal(sent.logprobs, true);
        assert.equal(sent.top_logprobs, 2);
        const record = await router.record(answer.requestId);
        assert.equal(record.attempts[0].provider, "openai");
        assert.deepEqual(record.decision_inputs.features?.provider_fields, ["logprobs", "top_logprobs"]);
        assert.ok(record.constraints_applied.includes("field_unsupported:local:logprobs,top_logprobs"));
      },
    );

    await t.step(
      "a SENSITIVE request with logprobs is a 400 naming logprobs, not a 503 to retry",
      async () => {
        const answer = await post({
          ...base,
          logprobs: true,
          routing_contract: { classification: "SENSITIVE" },
        });
        assert.equal(answer.status, 400);
        assert.equal(answer.body.error.code, "UNSUPPORTED_FIELD");
        assert.equal(answer.body.error.param, "logprobs");
        assert.match(answer.body.error.message, /SENSITIVE requests may not leave the local host/);
      },
    );

    await t.step("logprobs: false and n: 1, as SDKs send them, still run locally", async () => {
      const answer = await post({ ...base, logprobs: false, n: 1, modalities: ["text"] });
      assert.equal(answer.status, 200);
      assert.equal((await router.record(answer.requestId)).attempts[0].provider, "local");
    });
  } finally {
    await router.close();
  }
});
