/**
 * Every request path through `deno task serve` leaves exactly one schema-valid EDR file whose request_id is
 * the response's x-request-id; no EDR and no output line carries prompt text; a record that cannot be made
 * durable fails the request closed (503 EDR_WRITE_FAILED); and a record is durable before the answer ends.
 * Only the test of our own code's failures (a scripted adapter that throws or stalls) runs in-process.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { APIError } from "openai";
import { type EdrFailureType, type EdrRecord, validateEdr } from "../../lib/edr/mod.ts";
import type { ChatResult, StreamEvent } from "../../lib/canonical/mod.ts";
import type { ProviderAdapter } from "../../lib/providers/mod.ts";
import { type Harness, startHarness } from "./harness.ts";
import { policyWith, type ServedRouter, startServe } from "../e2e/serve_harness.ts";

const userTurn = (text: string) => [{ role: "user" as const, content: text }];

/** What one request's EDR must say. */
interface Want {
  status: number;
  failure: EdrFailureType | null;
  path: "primary" | "fallback" | "rejected" | "failed";
  stage?: string;
  /** The error body's reason code, when the answer was an error. */
  code?: string;
}

/**
 * Counts the EDRs of one harness: each `one()` asserts that exactly one new record exists, that it is
 * the one named by the response's x-request-id, that it validates, and that it says what `want` says.
 */
class EdrLedger {
  #h: Harness | ServedRouter;
  #seen = 0;

  constructor(h: Harness | ServedRouter) {
    this.#h = h;
  }

  async one(response: Response, want: Want): Promise<EdrRecord> {
    const requestId = response.headers.get("x-request-id");
    assert.ok(requestId, "the response carries x-request-id");
    assert.match(requestId, /^req_[0-9a-f]{32}$/);
    assert.equal(response.status, want.status, `HTTP status of ${requestId}`);
    if (want.code !== undefined) {
      const body = await response.clone().json();
      assert.equal(body.error.code, want.code);
    }
    const records = await this.#h.records();
    assert.equal(records.length, this.#seen + 1, "the request left exactly one new EDR");
    this.#seen++;
    const mine = records.filter((r) => r.request_id === requestId);
    assert.equal(mine.length, 1, `exactly one EDR has request_id ${requestId}`);
    const record = mine[0];
    const valid = validateEdr(record);
    assert.ok(valid.valid, `EDR is EDR_v1.0.0: ${valid.valid ? "" : valid.errors.join("; ")}`);
    assert.equal(record.failure?.type ?? null, want.failure);
    assert.equal(record.decision.path, want.path);
    if (want.stage !== undefined) assert.equal(record.failure?.stage, want.stage);
    return record;
  }

  /** Waits until the in-process writer has durably committed one more record than this ledger has seen. */
  async waitForNext(): Promise<void> {
    const h = this.#h as Harness;
    await waitUntil(() => h.router.edr.stats().committed >= this.#seen + 1);
  }
}

function post(
  h: Harness | ServedRouter,
  body: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  const url = "router" in h ? h.router.url : h.url;
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
}

/** Every file under `dir` (recursively) whose text contains `needle`, relative to `dir`. */
async function filesContaining(dir: string, needle: string, skip: string[] = []): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    for await (const entry of Deno.readDir(`${dir}/${sub}`)) {
      const rel = sub === "" ? entry.name : `${sub}/${entry.name}`;
      if (skip.includes(rel)) continue;
      if (entry.isDirectory) await walk(rel);
      else if (entry.isFile && (await Deno.readTextFile(`${dir}/${rel}`)).includes(needle)) hits.push(rel);
    }
  };
  await walk("");
  return hits;
}

Deno.test("success, stream, fallback, validation errors and a policy reject each leave one EDR and no prompt text", async (t) => {
  // Probing often lets the SENSITIVE step see Ollama go down without waiting the default 2 s.
  const h = await startServe({ policy: policyWith({ health: { probe_interval_ms: 100 } }) });
  const edrs = new EdrLedger(h);
  const marker = `MARKER-${crypto.randomUUID()}`;
  const secretMarker = `MARKER-SENSITIVE-${crypto.randomUUID()}`;
  try {
    await h.waitForOutput(/local health fit/);

    await t.step("a local answer is durable in the WAL when the client has its body", async () => {
      const response = await post(
        h,
        JSON.stringify({ model: "auto", messages: userTurn(`hello ${marker}`) }),
      );
      const body = await response.json();
      assert.equal(body.object, "chat.completion");
      const requestId = response.headers.get("x-request-id")!;
      // No waiting: the answer may only leave once its record is durable.
      const wal = await Deno.readTextFile(
        `${h.artifactsDir}/wal/${new Date().toISOString().slice(0, 10)}.log`,
      )
        .catch(() => "");
      const walHasIt = wal.includes(requestId) ||
        // the UTC day may just have turned
        (await filesContaining(`${h.artifactsDir}/wal`, requestId)).length > 0;
      assert.ok(walHasIt, "the WAL already holds the record");
      const record = await edrs.one(response, { status: 200, failure: null, path: "primary" });
      assert.equal(record.decision.provider, "local");
      assert.equal(record.replay.replayable, true, "INTERNAL input is captured for replay");
    });

    await t.step("a streamed local answer leaves one EDR marked stream", async () => {
      const { data: stream, response } = await h.client.chat.completions
        .create({ model: "auto", messages: userTurn(`stream ${marker}`), stream: true })
        .withResponse();
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      assert.ok(text.length > 0);
      const record = await edrs.one(response, { status: 200, failure: null, path: "primary" });
      assert.equal(record.stream, true);
      assert.ok(record.output_hash);
    });

    await t.step("a local 500 falls back to the cloud and leaves one EDR with path fallback", async () => {
      h.ollama.mode = "error500";
      try {
        const response = await post(
          h,
          JSON.stringify({ model: "auto", messages: userTurn(`fallback ${marker}`) }),
        );
        assert.equal((await response.json()).model, "claude-sonnet-4-5");
        const record = await edrs.one(response, { status: 200, failure: null, path: "fallback" });
        assert.deepEqual(record.attempts.map((a) => a.outcome), ["fallback", "ok"]);
      } finally {
        h.ollama.mode = "normal";
      }
    });

    await t.step("malformed JSON is a 400 with one validation_error EDR", async () => {
      const response = await post(h, `{"model":"auto","messages":[{"role":"user","content":"${marker}"`);
      const record = await edrs.one(response, {
        status: 400,
        failure: "validation_error",
        path: "rejected",
        stage: "parse",
        code: "INVALID_JSON",
      });
      assert.equal(record.input_hash, null);
      await response.body?.cancel();
    });

    await t.step("a bad routing contract is a 400 with one validation_error EDR", async () => {
      const response = await post(
        h,
        JSON.stringify({
          model: "auto",
          messages: userTurn(marker),
          routing_contract: { classification: "TOP" },
        }),
      );
      await edrs.one(response, {
        status: 400,
        failure: "validation_error",
        path: "rejected",
        stage: "parse",
        code: "INVALID_ROUTING_CONTRACT",
      });
      await response.body?.cancel();
    });

    await t.step("empty messages is a 400 with one validation_error EDR", async () => {
      const response = await post(h, JSON.stringify({ model: "auto", messages: [], user: marker }));
      await edrs.one(response, {
        status: 400,
        failure: "validation_error",
        path: "rejected",
        stage: "parse",
      });
      await response.body?.cancel();
    });

    await t.step("a SENSITIVE answer is served locally and its prompt is not captured", async () => {
      const response = await post(
        h,
        JSON.stringify({
          model: "auto",
          messages: userTurn(`sensitive ${secretMarker}`),
          routing_contract: { classification: "SENSITIVE" },
        }),
      );
      await response.json();
      const record = await edrs.one(response, { status: 200, failure: null, path: "primary" });
      assert.equal(record.replay.replayable, false);
      assert.equal(record.replay.required_inputs_pointer, null);
    });

    await t.step("SENSITIVE with local down is a 503 with one policy_rejection EDR", async () => {
      await h.ollama.stop();
      try {
        await h.waitForOutput(/local health unfit/);
        const response = await post(
          h,
          JSON.stringify({
            model: "auto",
            messages: userTurn(`sensitive ${marker} ${secretMarker}`),
            routing_contract: { classification: "SENSITIVE" },
          }),
        );
        const record = await edrs.one(response, {
          status: 503,
          failure: "policy_rejection",
          path: "rejected",
          stage: "decide",
          code: "LOCAL_UNAVAILABLE_FOR_SENSITIVE",
        });
        assert.deepEqual(record.attempts, []);
        assert.equal(record.replay.replayable, false);
        await response.body?.cancel();
      } finally {
        h.ollama.restart();
      }
    });

    await t.step("the prompt marker is in no EDR file and no output line", async () => {
      await h.records();
      // Captured PUBLIC/INTERNAL inputs legitimately hold the prompt (inputs/ and the WAL, documented);
      // finding it there proves the scan reads what it should.
      assert.ok(
        (await filesContaining(h.artifactsDir, marker, ["edr"])).length > 0,
        "the scan finds captured inputs",
      );
      assert.deepEqual(await filesContaining(`${h.artifactsDir}/edr`, marker), []);
      assert.deepEqual(await filesContaining(h.artifactsDir, marker, ["inputs", "wal"]), []);
      assert.ok(!h.output().includes(marker), h.output());
    });

    await t.step("a SENSITIVE prompt is nowhere under the artifacts dir and in no output line", async () => {
      await h.records();
      assert.deepEqual(await filesContaining(h.artifactsDir, secretMarker), []);
      assert.ok(!h.output().includes(secretMarker), h.output());
    });
  } finally {
    h.ollama.mode = "normal";
    await h.close();
  }
});

Deno.test("refusals at the door leave one EDR each: missing client key and missing authority", async (t) => {
  const goodKey = "sk-client-good";
  const h = await startServe({
    policy: policyWith({
      client_keys: [{ id: "ci", sha256: createHash("sha256").update(goodKey).digest("hex") }],
      authority: { required: true },
    }),
  });
  const edrs = new EdrLedger(h);
  const body = JSON.stringify({ model: "auto", messages: userTurn("who am i") });
  try {
    await h.waitForOutput(/local health fit/);
    await t.step("no client key is a 401 with one authentication_error EDR", async () => {
      const response = await post(h, body);
      await edrs.one(response, {
        status: 401,
        failure: "authentication_error",
        path: "rejected",
        stage: "authenticate",
        code: "CLIENT_KEY_MISSING",
      });
      await response.body?.cancel();
    });

    await t.step(
      "a valid key without the required authority block is a 403 with one authority_violation EDR",
      async () => {
        const response = await post(h, body, { authorization: `Bearer ${goodKey}` });
        const record = await edrs.one(response, {
          status: 403,
          failure: "authority_violation",
          path: "rejected",
          stage: "authorize",
        });
        assert.equal((await response.json()).error.type, "permission_error");
        assert.equal(record.attempts.length, 0);
      },
    );
  } finally {
    await h.close();
  }
});

Deno.test("upstream failures leave one EDR each: every candidate failing and a cut stream", async (t) => {
  const h = await startServe({ noCloudKeys: true });
  const edrs = new EdrLedger(h);
  try {
    await h.waitForOutput(/local health fit/);
    await t.step("local 500 with no cloud keys is a 5xx with one provider_error EDR", async () => {
      h.ollama.mode = "error500";
      try {
        const response = await post(
          h,
          JSON.stringify({ model: "auto", messages: userTurn("fail everywhere") }),
        );
        assert.ok(response.status >= 500, `status ${response.status}`);
        const record = await edrs.one(response, {
          status: response.status,
          failure: "provider_error",
          path: "failed",
          stage: "execute",
        });
        assert.notEqual((await response.json()).error.code, "EDR_WRITE_FAILED");
        assert.deepEqual(record.attempts.map((a) => [a.provider, a.outcome]), [["local", "failed"]]);
        assert.equal(record.decision.provider, null);
      } finally {
        h.ollama.mode = "normal";
      }
    });

    await t.step(
      "a local stream cut after content is an SDK error with one upstream_stream_cut EDR",
      async () => {
        h.ollama.mode = "cut_stream";
        try {
          const { data: stream, response } = await h.client.chat.completions
            .create({ model: "auto", messages: userTurn("cut me"), stream: true })
            .withResponse();
          const error = await (async () => {
            for await (const _ of stream) { /* drain */ }
          })().then(() => null, (e) => e);
          assert.ok(error instanceof APIError, "the SDK raised");
          const record = await edrs.one(response, {
            status: 200,
            failure: "upstream_stream_cut",
            path: "failed",
            stage: "stream",
          });
          assert.equal(record.output_hash, null);
        } finally {
          h.ollama.mode = "normal";
        }
      },
    );
  } finally {
    await h.close();
  }
});

Deno.test("a heavy request refused while the slot is held leaves one slot_refused EDR", async (t) => {
  const h = await startServe({ noCloudKeys: true, policy: policyWith({ slot: { when_busy: "refuse" } }) });
  const edrs = new EdrLedger(h);
  try {
    await h.waitForOutput(/local health fit/);
    const hold = h.ollama.hold();
    let held: Promise<Response> | null = null;
    try {
      await t.step("the first heavy request holds the slot", async () => {
        held = post(h, JSON.stringify({ model: "qwen3:32b", messages: userTurn("deep thought") }));
        await h.ollama.waitForInFlight("qwen3:32b", 1);
      });

      await t.step("a second heavy request is a 429 with Retry-After and one slot_refused EDR", async () => {
        const response = await post(h, JSON.stringify({ model: "qwen3:32b", messages: userTurn("me too") }));
        assert.ok(response.headers.get("retry-after"));
        await edrs.one(response, {
          status: 429,
          failure: "slot_refused",
          path: "rejected",
          code: "SLOT_BUSY",
        });
        await response.body?.cancel();
      });
    } finally {
      hold.release();
    }

    await t.step("the held request then completes with one EDR of its own", async () => {
      assert.ok(held);
      const response = await (held as unknown as Promise<Response>);
      await response.json();
      const record = await edrs.one(response, { status: 200, failure: null, path: "primary" });
      assert.equal(record.slot?.outcome, "acquired");
    });
  } finally {
    await h.close();
  }
});

/**
 * A local adapter that misbehaves in our own code's way: `throw` raises a plain TypeError (a bug, not an
 * upstream failure); `stall` streams one text event and then waits until the stream is cancelled.
 */
class ScriptedLocal implements ProviderAdapter {
  readonly provider = "local" as const;
  readonly protocol = "ollama_chat" as const;
  mode: "throw" | "stall" = "throw";
  /** Resolves when a stalled stream was cancelled (the client went away). */
  cancelled = Promise.withResolvers<void>();

  complete(): Promise<ChatResult> {
    return Promise.reject(new TypeError("cannot read properties of undefined (reading 'message')"));
  }

  stream(): Promise<ReadableStream<StreamEvent>> {
    if (this.mode === "throw") {
      return Promise.reject(new TypeError("cannot read properties of undefined (reading 'message')"));
    }
    const cancelled = this.cancelled;
    return Promise.resolve(
      new ReadableStream<StreamEvent>({
        start(controller) {
          controller.enqueue({ type: "text", text: "partial answer" });
        },
        pull: () => cancelled.promise,
        cancel() {
          cancelled.resolve();
        },
      }, { highWaterMark: 0 }),
    );
  }
}

Deno.test("our own failures leave one EDR each: an uncaught exception and a client leaving mid-stream", async (t) => {
  // Unit-level (in-process): only an injected adapter can throw a TypeError or stall mid-stream on cue.
  const local = new ScriptedLocal();
  const h = await startHarness({ noCloudKeys: true, start: { adapters: { local } } });
  const edrs = new EdrLedger(h);
  try {
    await t.step(
      "a TypeError in the request path is a 500 with one uncaught_exception EDR naming the stage",
      async () => {
        const marker = `MARKER-${crypto.randomUUID()}`;
        const response = await post(h, JSON.stringify({ model: "auto", messages: userTurn(marker) }));
        const record = await edrs.one(response, {
          status: 500,
          failure: "uncaught_exception",
          path: "failed",
          stage: "execute",
          code: "INTERNAL_ERROR",
        });
        const body = await response.json();
        assert.equal(body.error.type, "server_error");
        assert.ok(!JSON.stringify(body).includes("cannot read properties"), "the client sees no internals");
        assert.ok(!JSON.stringify(record).includes(marker));
        assert.ok(h.logs.some((line) => line.includes(record.request_id) && line.includes("TypeError")));
        assert.deepEqual(h.logs.filter((line) => line.includes(marker)), []);
      },
    );

    await t.step("a TypeError starting a stream is a 500 with one uncaught_exception EDR", async () => {
      const response = await post(
        h,
        JSON.stringify({ model: "auto", messages: userTurn("s"), stream: true }),
      );
      await edrs.one(response, {
        status: 500,
        failure: "uncaught_exception",
        path: "failed",
        stage: "execute",
        code: "INTERNAL_ERROR",
      });
      await response.body?.cancel();
    });

    await t.step("a client that leaves mid-stream leaves one client_disconnect EDR", async () => {
      local.mode = "stall";
      const controller = new AbortController();
      const response = await fetch(`${h.router.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "auto", messages: userTurn("leave early"), stream: true }),
        signal: controller.signal,
      });
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      while (!seen.includes("partial answer")) {
        const { value, done } = await reader.read();
        assert.ok(!done, "the stream stays open until the client leaves");
        seen += value;
      }
      controller.abort();
      await reader.cancel().catch(() => {});
      await local.cancelled.promise;
      await edrs.waitForNext();
      const record = await edrs.one(response, {
        status: 200,
        failure: "client_disconnect",
        path: "failed",
        stage: "stream",
      });
      assert.equal(record.attempts.at(-1)?.outcome, "aborted");
    });
  } finally {
    await h.close();
  }
});

Deno.test("a record that cannot be made durable fails the request closed", async (t) => {
  const h = await startServe({ noCloudKeys: true });
  /** Refused for the lost record itself, or up front while the router retries its disk. */
  const lostRecord = /^(EDR_WRITE_FAILED|EDR_UNAVAILABLE)$/;
  try {
    await h.waitForOutput(/local health fit/);
    // Works even as root: the day's WAL name is taken by a directory, so the log cannot be opened.
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    for (const d of new Set([day(Date.now()), day(Date.now() + 3_600_000)])) {
      await Deno.mkdir(`${h.artifactsDir}/wal/${d}.log`);
    }

    await t.step(
      "a stream whose record is lost ends with an EDR_WRITE_FAILED error event, no finish_reason and never [DONE]",
      async () => {
        const response = await post(
          h,
          JSON.stringify({ model: "auto", messages: userTurn("stream"), stream: true }),
        );
        const text = await response.text();
        assert.match(text, /EDR_WRITE_FAILED/);
        assert.ok(!text.includes("[DONE]"), "no [DONE] after a lost record");
        // A client that stops reading at finish_reason would otherwise take an unrecorded answer as complete.
        assert.doesNotMatch(text, /"finish_reason":"/);
        const requestId = response.headers.get("x-request-id")!;
        const line = await h.waitForOutput(
          new RegExp(`edr write failed.*${requestId}|${requestId}.*edr write failed`),
        );
        assert.ok(line.includes(requestId));
        // Its request log line says the router failed it, and why.
        const logged = JSON.parse(await h.waitForOutput(new RegExp(`"request_id":"${requestId}"`)));
        assert.deepEqual([logged.level, logged.status, logged.reason], ["error", 503, "EDR_WRITE_FAILED"]);
      },
    );

    await t.step("a non-stream request gets a 503 instead of its answer", async () => {
      const response = await post(
        h,
        JSON.stringify({ model: "auto", messages: userTurn("no record, no answer") }),
      );
      const body = await response.json();
      assert.equal(response.status, 503);
      assert.match(body.error.code, lostRecord);
      assert.equal(body.choices, undefined);
      assert.ok(response.headers.get("x-request-id"));
    });

    await t.step("the OpenAI SDK raises a 503 APIError for it", async () => {
      const error = await h.client.chat.completions
        .create({ model: "auto", messages: userTurn("sdk non-stream") })
        .catch((e) => e);
      assert.ok(error instanceof APIError);
      assert.equal(error.status, 503);
      assert.match(String(error.code), lostRecord);
    });

    await t.step("the OpenAI SDK raises for such a stream and shows no finish_reason", async () => {
      let finish: string | null = null;
      const error = await (async () => {
        const stream = await h.client.chat.completions.create({
          model: "auto",
          messages: userTurn("sdk stream, finish"),
          stream: true,
        });
        for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
      })().then(() => null, (e) => e);
      assert.ok(error instanceof APIError, "the SDK raised");
      assert.match(String(error.code), lostRecord);
      assert.equal(finish, null, "no finish_reason reached the client");
    });

    await t.step("no EDR file exists for any of them", async () => {
      assert.deepEqual(await h.records(), []);
    });
  } finally {
    await h.close();
  }
});

/** Polls a condition on each turn of the event loop until it holds (bounded by count, not time). */
async function waitUntil(condition: () => boolean, attempts = 5000): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  throw new Error("condition did not hold");
}
