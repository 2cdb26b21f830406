/**
 * Records hold bounded, non-identifying client text, through `deno task serve`: a SENSITIVE burst leaves
 * none of its model names, stop strings, users, preferences or prompts in the write-ahead log, the EDR
 * files or the router's output; over-long client strings are a 400 naming the field, with a small record;
 * and a local record whose stop strings are kept as hashes still replays to MATCH.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { edrPath, type EdrRecord, validateEdr } from "../../lib/edr/mod.ts";
import { runTask, type ServedRouter, startServeHealthy } from "./serve_harness.ts";

const sha = (text: string) => `sha256:${createHash("sha256").update(text, "utf8").digest("hex")}`;

/** A distinctive marker per field, so a leak says where it came from. */
function markers() {
  const tag = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  return {
    model: `MKMODEL${tag}`,
    stop: `MKSTOP${tag}`,
    user: `MKUSER${tag}`,
    preference: `MKPREF${tag}`,
    content: `MKCONTENT${tag}`,
    system: `MKSYSTEM${tag}`,
    issuer: `MKISSUER${tag}`,
    scope: `MKSCOPE${tag}`,
    contractKey: `MKKEY${tag}`,
  };
}

interface Answer {
  status: number;
  requestId: string;
  text: string;
}

async function post(router: ServedRouter, path: string, body: unknown, headers = {}): Promise<Answer> {
  const response = await fetch(`${router.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    requestId: response.headers.get("x-request-id") ?? "",
    text: await response.text(),
  };
}

/** Every file under `dir` as text, by path (a missing folder is empty). */
async function filesUnder(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (sub: string): Promise<void> => {
    for await (const entry of Deno.readDir(sub)) {
      const path = `${sub}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile) out.set(path, await Deno.readTextFile(path));
    }
  };
  await walk(dir);
  return out;
}

Deno.test("client text in the records: bounded, hashed, never echoed", async (t) => {
  const router = await startServeHealthy();
  try {
    const mark = markers();
    const sensitive = { classification: "SENSITIVE", model_preferences: [mark.preference, "qwen3:8b"] };
    // An unsigned block: its issuer and an unknown scope are client free text.
    const authority = () => ({
      issued_by: mark.issuer,
      scope: ["chat:completions", "messages:create", mark.scope],
      ttl: 60,
      lease_id: `lease-${crypto.randomUUID()}`,
    });
    const chatBody = (extra: Record<string, unknown> = {}) => ({
      model: "auto",
      authority: authority(),
      stop: [mark.stop, "\n\n"],
      user: mark.user,
      messages: [{ role: "system", content: mark.system }, { role: "user", content: mark.content }],
      routing_contract: sensitive,
      ...extra,
    });
    const messagesBody = (extra: Record<string, unknown> = {}) => ({
      model: "auto",
      authority: authority(),
      max_tokens: 64,
      stop_sequences: [mark.stop],
      metadata: { user_id: mark.user },
      system: mark.system,
      messages: [{ role: "user", content: mark.content }],
      routing_contract: sensitive,
      ...extra,
    });

    const burst: Array<{ name: string; status: number; answer: Promise<Answer> }> = [];
    const send = (name: string, status: number, answer: Promise<Answer>) =>
      burst.push({ name, status, answer });
    for (const stream of [false, true]) {
      send(`chat, stream ${stream}`, 200, post(router, "/v1/chat/completions", chatBody({ stream })));
      send(`messages, stream ${stream}`, 200, post(router, "/v1/messages", messagesBody({ stream })));
      send(
        `chat with an unknown model, stream ${stream}`,
        404,
        post(router, "/v1/chat/completions", chatBody({ stream, model: mark.model })),
      );
      send(
        `messages with an unknown model, stream ${stream}`,
        404,
        post(router, "/v1/messages", messagesBody({ stream, model: mark.model })),
      );
    }
    send(
      "chat with an unknown routing_contract field",
      400,
      post(
        router,
        "/v1/chat/completions",
        chatBody({ routing_contract: { ...sensitive, [mark.contractKey]: 1 } }),
      ),
    );
    const { routing_contract: _, ...headerBody } = chatBody();
    send(
      "chat with the contract in x-routing-contract",
      200,
      post(router, "/v1/chat/completions", headerBody, { "x-routing-contract": JSON.stringify(sensitive) }),
    );
    const answers = await Promise.all(burst.map((b) => b.answer));

    await t.step("the SENSITIVE burst is answered: 200s served locally, 404 for the unknown model", () => {
      burst.forEach((b, i) => assert.equal(answers[i].status, b.status, `${b.name}: ${answers[i].text}`));
    });

    await t.step("the 404 for an unknown model does not echo its name", () => {
      for (const [i, b] of burst.entries()) {
        if (b.status !== 404) continue;
        const error = JSON.parse(answers[i].text).error;
        assert.equal(error.type, "not_found_error", b.name);
        assert.ok(!answers[i].text.includes(mark.model), `${b.name} echoed the model: ${answers[i].text}`);
      }
    });

    const records = await router.records();
    const byId = new Map(records.map((r) => [r.request_id, r]));

    await t.step("each request has exactly one EDR", () => {
      for (const [i, b] of burst.entries()) {
        assert.equal(records.filter((r) => r.request_id === answers[i].requestId).length, 1, b.name);
      }
    });

    await t.step("no marker is in the WAL, the EDR files, any artifact or the router's output", async () => {
      const files = await filesUnder(router.artifactsDir);
      assert.ok([...files.keys()].some((p) => p.includes("/wal/")), "the WAL was scanned");
      assert.ok([...files.keys()].some((p) => p.includes("/edr/")), "the EDR files were scanned");
      const sources = [...files.entries(), ["router output", router.output()] as const];
      for (const [field, marker] of Object.entries(mark)) {
        for (const [where, text] of sources) {
          assert.ok(!text.includes(marker), `the ${field} marker is in ${where}`);
        }
      }
    });

    await t.step("the record names hashed text by its sha256 and keeps policy models by name", () => {
      const chat = byId.get(answers[0].requestId)!;
      assert.deepEqual(chat.environment.options.stop, [sha(mark.stop), sha("\n\n")]);
      assert.deepEqual(chat.effective_contract!.model_preferences, [sha(mark.preference), "qwen3:8b"]);
      assert.equal(chat.decision_inputs.features!.requested_model, "auto");
      const unknown = byId.get(answers[2].requestId)!;
      assert.equal(unknown.decision_inputs.features!.requested_model, sha(mark.model));
      assert.equal(unknown.failure?.code, "MODEL_NOT_FOUND");
    });
  } finally {
    await router.close();
  }
});

Deno.test("over-long client strings are a 400 naming the field, with a small record", async (t) => {
  const router = await startServeHealthy();
  try {
    const huge = "x".repeat(100_000);
    const user = [{ role: "user", content: "hi" }];
    const cases: Array<{ name: string; path: string; body: Record<string, unknown>; param: string }> = [
      {
        name: "a 100 KB model name",
        path: "/v1/chat/completions",
        body: { model: huge, messages: user },
        param: "model",
      },
      {
        name: "a long stop string",
        path: "/v1/chat/completions",
        body: { stop: huge, messages: user },
        param: "stop",
      },
      {
        name: "a long stop string in a list",
        path: "/v1/chat/completions",
        body: { stop: ["a", huge], messages: user },
        param: "stop.1",
      },
      {
        name: "a long user",
        path: "/v1/chat/completions",
        body: { user: huge, messages: user },
        param: "user",
      },
      {
        name: "a long model_preferences entry",
        path: "/v1/chat/completions",
        body: { messages: user, routing_contract: { model_preferences: [huge] } },
        param: "routing_contract.model_preferences.0",
      },
      {
        name: "17 model_preferences",
        path: "/v1/chat/completions",
        body: { messages: user, routing_contract: { model_preferences: Array(17).fill("m") } },
        param: "routing_contract.model_preferences",
      },
      {
        name: "a 100 KB model name on /v1/messages",
        path: "/v1/messages",
        body: { model: huge, max_tokens: 8, messages: user },
        param: "model",
      },
      {
        name: "a long stop sequence",
        path: "/v1/messages",
        body: { model: "auto", max_tokens: 8, stop_sequences: [huge], messages: user },
        param: "stop_sequences.0",
      },
      {
        name: "17 stop sequences",
        path: "/v1/messages",
        body: { model: "auto", max_tokens: 8, stop_sequences: Array(17).fill("s"), messages: user },
        param: "stop_sequences",
      },
      {
        name: "a long metadata.user_id",
        path: "/v1/messages",
        body: { model: "auto", max_tokens: 8, metadata: { user_id: huge }, messages: user },
        param: "metadata.user_id",
      },
    ];
    const answers: Answer[] = [];
    for (const c of cases) {
      await t.step(`${c.name} is a 400 with param ${c.param}`, async () => {
        const answer = await post(router, c.path, c.body);
        answers.push(answer);
        assert.equal(answer.status, 400, answer.text);
        const error = JSON.parse(answer.text).error;
        // Anthropic's error shape has no param: there the message names the field.
        if (c.path === "/v1/messages") {
          assert.match(error.message, new RegExp(`^invalid value for ${c.param}:`));
        } else assert.equal(error.param, c.param, answer.text);
        assert.ok(!answer.text.includes("xxxxxxxxxxxxxxxx"), `the error echoed the value: ${answer.text}`);
      });
    }
    await t.step(
      "a 2,000-character unknown contract field is a 400 whose record stays schema-valid",
      async () => {
        const answer = await post(router, "/v1/chat/completions", {
          messages: user,
          routing_contract: { ["k".repeat(2000)]: 1 },
        });
        assert.equal(answer.status, 400, answer.text);
        const record = await router.record(answer.requestId);
        assert.deepEqual(validateEdr(record), { valid: true });
        assert.ok(record.failure!.message.length <= 1000);
      },
    );

    await t.step("every refusal has one record, under 4 KB", async () => {
      const records = await router.records();
      for (const [i, answer] of answers.entries()) {
        const mine = records.filter((r) => r.request_id === answer.requestId);
        assert.equal(mine.length, 1, cases[i].name);
        const size = JSON.stringify(mine[0]).length;
        assert.ok(size < 4096, `${cases[i].name}: a ${size}-byte record`);
      }
    });
  } finally {
    await router.close();
  }
});

Deno.test("a local record with hashed stop strings replays to MATCH with the real strings", async () => {
  const router = await startServeHealthy();
  try {
    const stop = ["END-OF-ANSWER", "\n\n"];
    const answer = await post(router, "/v1/chat/completions", {
      model: "auto",
      stop,
      seed: 7,
      messages: [{ role: "user", content: "replay my stop strings" }],
      routing_contract: { classification: "INTERNAL", model_preferences: ["not-a-policy-model"] },
    });
    assert.equal(answer.status, 200, answer.text);
    const record: EdrRecord = await router.record(answer.requestId);
    assert.deepEqual(record.environment.options.stop, stop.map(sha));
    const before = router.ollama.requests.length;
    const { code, stdout, output } = await runTask(
      ["replay", "--json", `${router.artifactsDir}/${edrPath(record)}`],
      { OLLAMA_HOST: router.ollama.url, HI_ARTIFACTS_DIR: router.artifactsDir },
    );
    const report = JSON.parse(stdout || "{}");
    assert.equal(report.status, "MATCH", output);
    assert.equal(code, 0);
    const replayed = router.ollama.requests.slice(before) as Array<{ options?: { stop?: unknown } }>;
    assert.equal(replayed.length, 1);
    assert.deepEqual(replayed[0].options?.stop, stop);
  } finally {
    await router.close();
  }
});
