/**
 * No answer without a record, through `deno task serve`: input the record could not hash is refused
 * before any provider is called, and a disk that fills up stops requests before they reach a provider,
 * ends a stream already under way in an error instead of a clean finish, and heals by itself once
 * space is freed.
 */
import assert from "node:assert/strict";
import { policyWith, runTask, type ServedRouter, startServe } from "./serve_harness.ts";

const LONE = "\\ud800";
const MARK = "@@LONE@@";

/** Sends `body` as JSON, with every MARK replaced by a lone-surrogate escape (JSON.stringify never makes one). */
async function postRaw(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; requestId: string; text: string }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body).replaceAll(MARK, LONE),
  });
  return {
    status: response.status,
    requestId: response.headers.get("x-request-id") ?? "",
    text: await response.text(),
  };
}

function upstreamCalls(router: ServedRouter): number {
  return router.ollama.requests.length + router.openai.requests.length + router.anthropic.requests.length;
}

const chatUser = (content: string) => [{ role: "user", content }];

Deno.test("a lone surrogate anywhere the record hashes is a 400 naming the field, with an EDR and no upstream call", async (t) => {
  const router = await startServe();
  const chat = `${router.url}/v1/chat/completions`;
  const messages = `${router.url}/v1/messages`;
  const toCloud = { provider_allowlist: ["openai"] };
  const cases: Array<{
    name: string;
    url: string;
    body: Record<string, unknown>;
    headers?: Record<string, string>;
    param: string;
  }> = [];
  for (const stream of [false, true]) {
    for (const [where, contract] of [["local", undefined], ["cloud", toCloud]] as const) {
      const base = { model: "auto", stream, ...(contract ? { routing_contract: contract } : {}) };
      cases.push(
        {
          name: `message content (${where}, stream ${stream})`,
          url: chat,
          body: { ...base, messages: chatUser(`hi ${MARK}`) },
          param: "messages[0].content",
        },
        {
          name: `user (${where}, stream ${stream})`,
          url: chat,
          body: { ...base, user: `u${MARK}`, messages: chatUser("hi") },
          param: "user",
        },
      );
    }
    cases.push(
      {
        name: `authority.issued_by in the body (stream ${stream})`,
        url: chat,
        body: {
          stream,
          messages: chatUser("hi"),
          authority: { issued_by: `ops${MARK}`, scope: "chat:completions", ttl: 60, lease_id: "l-1" },
        },
        param: "authority.issued_by",
      },
      {
        name: `authority.issued_by in x-authority (stream ${stream})`,
        url: chat,
        body: { stream, messages: chatUser("hi") },
        headers: {
          "x-authority": `{"issued_by":"ops${LONE}","scope":"chat:completions","ttl":60,"lease_id":"l-2"}`,
        },
        param: "x-authority.issued_by",
      },
      {
        name: `routing_contract.model_preferences in the body (stream ${stream})`,
        url: chat,
        body: { stream, messages: chatUser("hi"), routing_contract: { model_preferences: [`m${MARK}`] } },
        param: "routing_contract.model_preferences[0]",
      },
      {
        name: `routing_contract.model_preferences in x-routing-contract (stream ${stream})`,
        url: chat,
        body: { stream, messages: chatUser("hi") },
        headers: { "x-routing-contract": `{"model_preferences":["m${LONE}"]}` },
        param: "x-routing-contract.model_preferences[0]",
      },
      {
        name: `/v1/messages content (stream ${stream})`,
        url: messages,
        body: { model: "auto", max_tokens: 64, stream, messages: chatUser(`hi ${MARK}`) },
        param: "messages[0].content",
      },
      {
        name: `/v1/messages system (stream ${stream})`,
        url: messages,
        body: { model: "auto", max_tokens: 64, stream, system: `be ${MARK}`, messages: chatUser("hi") },
        param: "system",
      },
    );
  }
  try {
    for (const c of cases) {
      await t.step(c.name, async () => {
        const before = upstreamCalls(router);
        const answer = await postRaw(c.url, c.body, c.headers);
        assert.equal(answer.status, 400, answer.text);
        const error = JSON.parse(answer.text).error;
        assert.equal(error.type, "invalid_request_error");
        assert.match(error.message, new RegExp(`^${c.param.replace(/[[\].]/g, "\\$&")} `));
        if (c.url === chat) {
          assert.equal(error.code, "INVALID_UNICODE_OR_NUMBER");
          assert.equal(error.param, c.param);
        }
        assert.equal(upstreamCalls(router), before, "no provider was called");
        const record = await router.record(answer.requestId);
        assert.equal(record.failure?.type, "validation_error");
        assert.equal(record.decision.path, "rejected");
      });
    }
    await t.step("a number too large for a double is refused the same way", async () => {
      const response = await fetch(chat, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"messages":[{"role":"user","content":"hi"}],"temperature":1e400}',
      });
      const body = await response.json();
      assert.equal(response.status, 400);
      assert.equal(body.error.param, "temperature");
      await router.record(response.headers.get("x-request-id")!);
    });
    await t.step("the router still answers, and verify finds every record intact", async () => {
      const answer = await router.client.chat.completions.create({
        model: "auto",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(answer.choices[0].finish_reason, "stop");
      await router.records();
      // Given the artifacts folder itself, verify checks its edr/ folder.
      const verify = await runTask(["verify", router.artifactsDir]);
      assert.equal(verify.code, 0, verify.output);
    });
  } finally {
    await router.close();
  }
});

/** Whether this machine can make a folder in the temp directory immutable (root, chattr, a file system with it). */
async function canMakeImmutable(): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  const probe = await Deno.makeTempDir({ prefix: "hi-chattr-" });
  try {
    const set = await new Deno.Command("chattr", { args: ["+i", probe], stderr: "null" }).output();
    if (!set.success) return false;
    await new Deno.Command("chattr", { args: ["-i", probe] }).output();
    return true;
  } catch {
    return false; // no chattr on this machine
  } finally {
    await Deno.remove(probe).catch(() => {});
  }
}

const chattr = await canMakeImmutable();

Deno.test({
  name: "a restart that cannot restore its EDR files says the real cause and remedy in one line",
  ignore: !chattr,
  async fn() {
    const first = await startServe();
    const artifactsDir = `${first.artifactsDir}-kept`;
    let second: ServedRouter | null = null;
    try {
      const answer = await postRaw(`${first.url}/v1/chat/completions`, { messages: chatUser("hi") });
      assert.equal(answer.status, 200);
      // A crash before the file was made: the record is only in the WAL, which the restart replays.
      await first.stop("SIGKILL");
      await Deno.rename(first.artifactsDir, artifactsDir);
      await Deno.remove(`${artifactsDir}/edr`, { recursive: true });
      await Deno.mkdir(`${artifactsDir}/edr`);
      // Immutable: even root cannot create the restored file under it.
      const immutable = await new Deno.Command("chattr", { args: ["+i", `${artifactsDir}/edr`] }).output();
      assert.ok(immutable.success, "chattr +i needs a file system that supports it (ext4, xfs, btrfs)");
      const started = startServe({ artifactsDir });
      const failure = await started.then(
        (s) => {
          second = s;
          return null;
        },
        (error: Error) => error.message,
      );
      assert.ok(failure, "the router must not start without restoring its records");
      const line = failure.split("\n").find((l) => l.includes("cannot start")) ?? failure;
      assert.match(line, /hybrid-inference cannot start: .*Operation not permitted/);
      assert.match(line, /chattr \+i/);
      assert.doesNotMatch(failure, /Uncaught|\n\s+at /);
    } finally {
      await new Deno.Command("chattr", { args: ["-i", `${artifactsDir}/edr`] }).output();
      await (second as ServedRouter | null)?.close();
      await first.close();
      await Deno.remove(artifactsDir, { recursive: true }).catch(() => {});
    }
  },
});

/** Mounts a small tmpfs (root only); null where this machine does not allow it. */
async function smallDisk(megabytes: number): Promise<{ path: string; unmount(): Promise<void> } | null> {
  if (Deno.uid() !== 0) return null;
  const path = await Deno.makeTempDir({ prefix: "hi-tmpfs-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${megabytes}m`, "tmpfs", path],
    stderr: "null",
  }).output();
  if (!mount.success) {
    await Deno.remove(path);
    return null;
  }
  return {
    path,
    async unmount() {
      await new Deno.Command("umount", { args: [path] }).output();
      await Deno.remove(path);
    },
  };
}

/** Fills the file system under `dir` with one file; returns its path (remove it to free the space). */
async function fill(dir: string): Promise<string> {
  const path = `${dir}/filler`;
  const file = await Deno.open(path, { write: true, create: true });
  const block = new Uint8Array(64 * 1024);
  try {
    while (true) {
      try {
        await file.write(block);
      } catch (error) {
        if (/os error 28|No space/i.test(String(error))) break;
        throw error;
      }
    }
  } finally {
    file.close();
  }
  return path;
}

const disk = await smallDisk(8);

Deno.test({
  name: "a full disk: no answer without a durable record, and the router heals by itself once space is freed",
  ignore: disk === null,
  async fn(t) {
    const artifactsDir = `${disk!.path}/artifacts`;
    const router = await startServe({ artifactsDir, policy: policyWith({}) });
    const chat = `${router.url}/v1/chat/completions`;
    const answered: string[] = [];
    const toOpenAI = { routing_contract: { provider_allowlist: ["openai"] } };
    let filler = "";
    try {
      await t.step("answers while the disk has room", async () => {
        const answer = await postRaw(chat, { messages: chatUser("hi") });
        assert.equal(answer.status, 200, answer.text);
        answered.push(answer.requestId);
      });

      let held: Promise<Response>;
      const hold = router.ollama.hold();
      await t.step(
        "a stream already under way when the disk fills ends in an error event, not a finish",
        async () => {
          held = fetch(chat, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ stream: true, messages: chatUser("hold me") }),
          });
          await router.ollama.waitForRequests(router.ollama.requests.length + 1);
          filler = await fill(disk!.path);
          // The log keeps room written ahead; requests use it up until a write needs new space.
          let refused: { status: number; text: string } | null = null;
          for (let i = 0; i < 5000 && refused === null; i++) {
            const answer = await postRaw(chat, { messages: chatUser(`burn ${i}`), ...toOpenAI });
            if (answer.status === 200) answered.push(answer.requestId);
            else refused = answer;
          }
          assert.ok(refused, "the disk never filled");
          assert.equal(refused.status, 503, refused.text);
          hold.release();
          const response = await held!;
          assert.equal(response.status, 200);
          const text = await response.text();
          assert.match(text, /EDR_WRITE_FAILED|EDR_UNAVAILABLE/);
          assert.doesNotMatch(text, /"finish_reason":"stop"/);
          assert.doesNotMatch(text, /\[DONE\]/);
        },
      );

      await t.step("while degraded: 503 EDR_UNAVAILABLE, no provider called, /readyz says why", async () => {
        const before = upstreamCalls(router);
        for (const stream of [false, true]) {
          const answer = await postRaw(chat, { stream, messages: chatUser("hi") });
          assert.equal(answer.status, 503, answer.text);
          assert.equal(JSON.parse(answer.text).error.code, "EDR_UNAVAILABLE");
        }
        assert.equal(upstreamCalls(router), before);
        const ready = await fetch(`${router.url}/readyz`);
        const body = await ready.json();
        assert.equal(ready.status, 503);
        assert.equal(body.edr.state, "degraded");
        assert.ok(body.reasons.includes("edr_writer_degraded"), JSON.stringify(body.reasons));
        const metrics = await (await fetch(`${router.url}/metrics`)).text();
        assert.match(metrics, /hi_edr_writes_total\{outcome="failed"\} [1-9]/);
        assert.match(metrics, /hi_edr_writer_degraded 1/);
      });

      await t.step("space freed: the writer heals by itself and answers again", async () => {
        await Deno.remove(filler);
        const deadline = Date.now() + 15_000;
        let ready = false;
        while (!ready && Date.now() < deadline) {
          const response = await fetch(`${router.url}/readyz`);
          await response.body?.cancel();
          ready = response.status === 200;
        }
        assert.ok(ready, "the writer did not heal within 15 s");
        const answer = await postRaw(chat, { messages: chatUser("back") });
        assert.equal(answer.status, 200, answer.text);
        answered.push(answer.requestId);
        const stream = await postRaw(chat, { stream: true, messages: chatUser("back") });
        assert.match(stream.text, /\[DONE\]/);
        answered.push(stream.requestId);
      });

      await t.step(
        "every answered request has its record, the chain is intact, and SIGTERM exits 0",
        async () => {
          const records = await router.records();
          const ids = new Set(records.map((r) => r.request_id));
          for (const id of answered) assert.ok(ids.has(id), `answered request ${id} has no EDR`);
          const { code, output } = await router.stop("SIGTERM");
          assert.equal(code, 0, output);
          assert.doesNotMatch(output, /Uncaught|\n\s+at /);
          const verify = await runTask(["verify", `${artifactsDir}/edr`]);
          assert.equal(verify.code, 0, verify.output);
        },
      );
    } finally {
      await router.close();
      await disk!.unmount();
    }
  },
});
