/**
 * A fuzz corpus at the HTTP boundary, through one `deno task serve` router: arbitrary JSON bodies,
 * arbitrary values in every field of a valid body, and truncated or byte-flipped valid bodies, on both
 * /v1/chat/completions and /v1/messages. Every answer is a 2xx, or a 4xx whose JSON error carries a reason
 * code; every answer has exactly one EDR with its x-request-id; every record passes `deno task verify`; the
 * router keeps answering.
 *
 * CI runs FUZZ_RUNS (default 100) cases per property; `deno task fuzz` runs 1000 (FUZZ_RUNS overrides,
 * FUZZ_SEED replays a failing run's seed).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { validateEdr } from "../../lib/edr/mod.ts";
import { runTask, startServeHealthy } from "./serve_harness.ts";

const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? (Deno.args.includes("--fuzz") ? 1000 : 100));
const SEED = Deno.env.get("FUZZ_SEED");
const PARAMS = { numRuns: RUNS, ...(SEED ? { seed: Number(SEED) } : {}) };

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const contract = {
  classification: "INTERNAL",
  latency: "interactive",
  max_cost_usd: 1,
  requires: ["tool_calls"],
  provider_allowlist: ["local", "openai"],
  model_preferences: ["qwen3:8b"],
  authority_required: false,
};

/** Unsigned authority blocks are allowed by default; each body gets a fresh lease id (they are single-use). */
const authority = (scope: string) => ({
  issued_by: "ops",
  scope: [scope],
  ttl: 60,
  lease_id: `fuzz-${crypto.randomUUID()}`,
});

/** A fresh copy: properties mutate the bodies they get. */
const asJson = (value: unknown) => structuredClone(value) as Json;

/** A valid body per endpoint, using every field the router reads. */
const ENDPOINTS: Record<string, () => Json> = {
  "/v1/chat/completions": () =>
    asJson({
      model: "auto",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: [{ type: "text", text: "hi" }] },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "c1", content: "done" },
      ],
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
      tool_choice: "auto",
      temperature: 0.5,
      top_p: 1,
      max_tokens: 32,
      stop: ["\n\n"],
      seed: 1,
      user: "u-1",
      stream: false,
      response_format: { type: "text" },
      routing_contract: contract,
      authority: authority("chat:completions"),
    }),
  "/v1/messages": () =>
    asJson({
      model: "auto",
      max_tokens: 32,
      system: "be brief",
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: [{ type: "tool_use", id: "t1", name: "f", input: {} }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "t1", content: "done" }] },
      ],
      tools: [{ name: "f", input_schema: { type: "object" } }],
      tool_choice: { type: "auto" },
      temperature: 0.5,
      top_p: 1,
      top_k: 5,
      stop_sequences: ["\n\n"],
      metadata: { user_id: "u-1" },
      stream: false,
      routing_contract: contract,
      authority: authority("messages:create"),
    }),
};

/** Every path in `value` (objects and arrays included, the root excluded). */
function pathsOf(value: Json, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== "object") return [];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return entries.flatMap(([key, child]) => [[...prefix, key], ...pathsOf(child, [...prefix, key])]);
}

function valueAt(body: Json, path: (string | number)[]): Json {
  let value = body;
  for (const key of path) value = (value as Record<string | number, Json>)[key];
  return value;
}

function isObject(value: Json): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function withValueAt(body: Json, path: (string | number)[], value: Json): Json {
  const copy = structuredClone(body);
  let holder = copy as Record<string | number, Json>;
  for (const key of path.slice(0, -1)) holder = holder[key] as Record<string | number, Json>;
  holder[path[path.length - 1]] = value;
  return copy;
}

/** Any UTF-16 code unit, lone surrogates included. */
const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u));
const anyString = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.string({ unit: anyUnit }));
/** Numbers at the edges of what JSON, zod and the canonicalizer treat differently. */
const edgeNumber = fc.constantFrom(0, -0, -1, 0.5, 2 ** 31, 2 ** 53, 2 ** 64, 1e21, 1e308, -1e308, 5e-324);
/** An object whose field names are long: error messages that name unknown fields must stay bounded. */
const longKeys = fc.dictionary(fc.string({ minLength: 200, maxLength: 1200 }), fc.constant(1), {
  minKeys: 1,
  maxKeys: 3,
});
const anyValue: fc.Arbitrary<Json> = fc.oneof(
  anyString,
  fc.string({ minLength: 240, maxLength: 300 }),
  edgeNumber,
  longKeys,
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
);

Deno.test("fuzzed requests get a clean answer and one record each, and the router keeps answering", async (t) => {
  const router = await startServeHealthy();
  const sent: { requestId: string; what: string }[] = [];
  const encoder = new TextEncoder();

  /** Sends one body and checks what a client sees; the record is checked once at the end. */
  const send = async (path: string, body: string | Uint8Array<ArrayBuffer>, what: string, headers = {}) => {
    const response = await fetch(`${router.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });
    const text = await response.text();
    const requestId = response.headers.get("x-request-id") ?? "";
    const shown = `${what} -> ${response.status} ${text.slice(0, 300)}`;
    assert.match(requestId, /^req_[0-9a-f]{32}$/, shown);
    sent.push({ requestId, what });
    const status = response.status;
    assert.ok((status >= 200 && status < 300) || (status >= 400 && status < 500), shown);
    if (status >= 400) {
      const code = JSON.parse(text)?.error?.code;
      assert.ok(typeof code === "string" && /^[A-Z0-9_]+$/.test(code), shown);
    } else if (response.headers.get("content-type")?.startsWith("application/json")) {
      JSON.parse(text);
    }
  };

  try {
    for (const [path, valid] of Object.entries(ENDPOINTS)) {
      await t.step(`${path}: an arbitrary JSON value as the body`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (body) => {
            await send(path, JSON.stringify(body), `body ${JSON.stringify(body)}`);
          }),
          PARAMS,
        );
      });

      const paths = pathsOf(valid());
      await t.step(`${path}: an arbitrary value in any of its ${paths.length} fields`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.boolean(), fc.constantFrom(...paths), anyValue, async (stream, at, value) => {
            const body = withValueAt({ ...valid() as Record<string, Json>, stream }, at, value);
            await send(
              path,
              JSON.stringify(body),
              `${at.join(".")} = ${JSON.stringify(value)} (stream ${stream})`,
            );
          }),
          PARAMS,
        );
      });

      const objects = [[], ...paths].filter((at) => isObject(valueAt(valid(), at)));
      await t.step(
        `${path}: an unknown field, its name up to 1200 characters, in any of its ${objects.length} objects`,
        async () => {
          await fc.assert(
            fc.asyncProperty(
              fc.constantFrom(...objects),
              fc.oneof(fc.string({ maxLength: 64 }), fc.string({ minLength: 500, maxLength: 1200 })),
              async (at, name) => {
                const body = valid();
                (valueAt(body, at) as Record<string, Json>)[name] = 1;
                await send(
                  path,
                  JSON.stringify(body),
                  `${name.length}-character field ${JSON.stringify(name.slice(0, 40))} in ${
                    at.join(".") || "the body"
                  }`,
                );
              },
            ),
            PARAMS,
          );
        },
      );

      await t.step(`${path}: an arbitrary x-routing-contract or x-authority header`, async () => {
        const printable = fc.string({
          unit: fc.integer({ min: 0x20, max: 0x7e }).map((u) => String.fromCharCode(u)),
        });
        const headers = { "x-routing-contract": "routing_contract", "x-authority": "authority" };
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...Object.keys(headers) as (keyof typeof headers)[]),
            fc.oneof(printable, fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v))),
            async (name, header) => {
              const body = valid() as Record<string, Json>;
              delete body[headers[name]];
              await send(path, JSON.stringify(body), `${name}: ${header}`, { [name]: header });
            },
          ),
          PARAMS,
        );
      });

      await t.step(`${path}: a truncated valid body`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), async (at) => {
            const bytes = encoder.encode(JSON.stringify(valid()));
            const cut = Math.floor(at * bytes.length);
            await send(path, bytes.slice(0, cut), `the valid body cut at byte ${cut}`);
          }),
          PARAMS,
        );
      });

      await t.step(`${path}: a valid body with flipped bytes`, async () => {
        const flip = fc.tuple(
          fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
          fc.integer({ min: 1, max: 255 }),
        );
        await fc.assert(
          fc.asyncProperty(fc.array(flip, { minLength: 1, maxLength: 4 }), async (flips) => {
            const bytes = encoder.encode(JSON.stringify(valid()));
            const where = flips.map(([at, mask]) => {
              const i = Math.floor(at * bytes.length);
              bytes[i] ^= mask;
              return `${i}^${mask}`;
            });
            await send(path, bytes, `the valid body with bytes flipped at ${where.join(", ")}`);
          }),
          PARAMS,
        );
      });
    }

    await t.step(
      "every answer has exactly one EDR with its x-request-id, valid against the schema",
      async () => {
        const records = await router.records();
        const byId = Map.groupBy(records, (r) => r.request_id);
        for (const { requestId, what } of sent) {
          const mine = byId.get(requestId) ?? [];
          assert.equal(mine.length, 1, `${what}: ${mine.length} records`);
          const validity = validateEdr(mine[0]);
          assert.ok(validity.valid, `${what}: ${!validity.valid && validity.errors.join("; ")}`);
        }
      },
    );

    await t.step(
      "after the corpus a normal request is answered 200 and the router is still running",
      async () => {
        for (const [path, valid] of Object.entries(ENDPOINTS)) {
          const response = await fetch(`${router.url}${path}`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(valid()),
          });
          assert.equal(response.status, 200, await response.text());
        }
        const { code, output } = await router.stop();
        assert.equal(code, 0, output);
      },
    );

    await t.step("deno task verify finds every record of the corpus valid and chained", async () => {
      const { code, output } = await runTask(["verify", router.artifactsDir]);
      assert.equal(code, 0, output.slice(0, 2000));
    });
  } finally {
    await router.close();
  }
});
