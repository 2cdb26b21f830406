/**
 * Checkpoints through `deno task serve` and `deno task verify`: the router signs each day's chain head
 * (at its interval and at shutdown), serves it at `GET /v1/edr/head`, and verify finds a tail cut together
 * with its write-ahead log lines, a chain re-hashed after the log was deleted, a missing log, a forged
 * checkpoint, and a head shipped off the host that is no longer in the chain.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { computeEdrHash, edrPath, type EdrRecord } from "../../lib/edr/mod.ts";
import { policyWith, runTask, type ServedRouter, startServe } from "./serve_harness.ts";

const SECRET = "checkpoint-secret-for-tests";
const SECRET_ENV = "HI_TEST_CHECKPOINT_SECRET";

async function chat(router: ServedRouter, content: string): Promise<void> {
  const answer = await router.client.chat.completions.create({
    model: "auto",
    messages: [{ role: "user", content }],
  });
  assert.equal(answer.choices[0].finish_reason, "stop");
}

/** Copies a folder tree (the artifacts of a stopped router), so each damage starts from the same state. */
async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(join(from, entry.name), join(to, entry.name));
    else if (entry.isFile) await Deno.copyFile(join(from, entry.name), join(to, entry.name));
  }
}

Deno.test("signed checkpoints anchor each day's chain: truncation and re-chaining are findings", async (t) => {
  const scratch = await Deno.makeTempDir({ prefix: "hi-checkpoint-" });
  const keyFile = join(scratch, "checkpoint.key");
  await Deno.writeTextFile(keyFile, SECRET + "\n");
  const router = await startServe({
    policy: policyWith({
      checkpoints: { interval_s: 3600, hmac_secret_env: SECRET_ENV, key_id: "ops-2026" },
    }),
    env: { [SECRET_ENV]: SECRET },
  });
  let records: EdrRecord[] = [];
  let head: Record<string, unknown> = {};
  try {
    await t.step("GET /v1/edr/head serves the day's head, signed with the operator key", async () => {
      for (const n of [1, 2, 3]) await chat(router, `question ${n}`);
      records = await router.records();
      assert.equal(records.length, 3);
      const response = await fetch(`${router.url}/v1/edr/head`);
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.equal(body.heads.length, 1);
      head = body.heads[0];
      assert.equal(head.day, records[2].timestamp.slice(0, 10));
      assert.equal(head.sequence, 3);
      assert.equal(head.edr_hash, records[2].edr_hash);
      assert.equal(head.key_id, "ops-2026");
      assert.match(String(head.signature), /^[A-Za-z0-9_-]{43}$/);
    });

    await t.step("stopping writes a last checkpoint, and verify checks it with the key", async () => {
      const { code, output } = await router.stop("SIGTERM");
      assert.equal(code, 0, output);
      const lines = (await Deno.readTextFile(join(router.artifactsDir, "checkpoints", `${head.day}.jsonl`)))
        .trim().split("\n").map((line) => JSON.parse(line));
      assert.equal(lines.length, 1);
      assert.deepEqual([lines[0].sequence, lines[0].edr_hash, lines[0].key_id], [
        3,
        head.edr_hash,
        "ops-2026",
      ]);
      const verify = await runTask(["verify", router.artifactsDir, "--checkpoint-key-file", keyFile]);
      assert.equal(verify.code, 0, verify.output);
      assert.match(verify.output, /1 checkpoint\(s\) anchor the chains/);
    });

    /** Runs verify on a copy of the stopped router's artifacts after `damage`. */
    const damaged = async (damage: (dir: string) => Promise<void>, args: string[] = []) => {
      const dir = await Deno.makeTempDir({ dir: scratch });
      await copyTree(router.artifactsDir, dir);
      await damage(dir);
      return await runTask(["verify", dir, "--checkpoint-key-file", keyFile, ...args]);
    };
    const walOf = (dir: string) => join(dir, "wal", `${head.day}.log`);
    const fileOf = (dir: string, record: EdrRecord) => join(dir, edrPath(record));

    await t.step("deleting the last record together with its WAL line is a TRUNCATED finding", async () => {
      const { code, output } = await damaged(async (dir) => {
        await Deno.remove(fileOf(dir, records[2]));
        const lines = (await Deno.readTextFile(walOf(dir))).trimEnd().split("\n");
        await Deno.writeTextFile(walOf(dir), lines.slice(0, -1).join("\n") + "\n");
      });
      assert.equal(code, 1, output);
      assert.match(output, /TRUNCATED .*counted 3 record\(s\)/);
    });

    await t.step("re-chaining the records and deleting the WAL is RECHAINED and WAL_MISSING", async () => {
      const { code, output } = await damaged(async (dir) => {
        const second = { ...records[1], usage: { ...records[1].usage!, total_tokens: 999 } };
        second.edr_hash = computeEdrHash(second);
        const third = { ...records[2], prev_edr_hash: second.edr_hash };
        third.edr_hash = computeEdrHash(third);
        await Deno.writeTextFile(fileOf(dir, records[1]), JSON.stringify(second));
        await Deno.writeTextFile(fileOf(dir, records[2]), JSON.stringify(third));
        await Deno.remove(walOf(dir));
      });
      assert.equal(code, 1, output);
      assert.match(output, /RECHAINED .*sequence 3/);
      assert.match(output, /WAL_MISSING .*no write-ahead log/);
    });

    await t.step("a checkpoint rewritten to count fewer records does not hold under the key", async () => {
      const { code, output } = await damaged(async (dir) => {
        const path = join(dir, "checkpoints", `${head.day}.jsonl`);
        const line = JSON.parse(await Deno.readTextFile(path));
        const forged = { ...line, sequence: 2, edr_hash: records[1].edr_hash };
        await Deno.writeTextFile(path, JSON.stringify(forged) + "\n");
        await Deno.remove(fileOf(dir, records[2]));
        const lines = (await Deno.readTextFile(walOf(dir))).trimEnd().split("\n");
        await Deno.writeTextFile(walOf(dir), lines.slice(0, -1).join("\n") + "\n");
      });
      assert.equal(code, 1, output);
      assert.match(output, /CHECKPOINT_INVALID .*signature does not hold/);
    });

    await t.step(
      "with the checkpoints deleted too, the head shipped off the host still finds the cut",
      async () => {
        const cut = async (dir: string) => {
          await Deno.remove(join(dir, "checkpoints"), { recursive: true });
          await Deno.remove(fileOf(dir, records[2]));
          const lines = (await Deno.readTextFile(walOf(dir))).trimEnd().split("\n");
          await Deno.writeTextFile(walOf(dir), lines.slice(0, -1).join("\n") + "\n");
        };
        assert.equal((await damaged(cut)).code, 0, "without an anchor off the host the cut cannot be seen");
        const { code, output } = await damaged(cut, ["--expect-head", String(head.edr_hash)]);
        assert.equal(code, 1, output);
        assert.match(output, /TRUNCATED .*given with --expect-head/);
      },
    );
  } finally {
    await router.close();
    await Deno.remove(scratch, { recursive: true });
  }
});

Deno.test("without a key in the policy, checkpoints are written at the interval and marked unsigned", async () => {
  const router = await startServe({ policy: policyWith({ checkpoints: { interval_s: 1 } }) });
  try {
    await chat(router, "hello");
    const [record] = await router.records();
    const path = join(router.artifactsDir, "checkpoints", `${record.timestamp.slice(0, 10)}.jsonl`);
    // The interval writes it while the router runs (bounded wait on the file, not a fixed sleep).
    const deadline = Date.now() + 15_000;
    let text = "";
    while (text === "" && Date.now() < deadline) {
      text = await Deno.readTextFile(path).catch(() => "");
      if (text === "") await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.notEqual(text, "", "no checkpoint within 15 s at a 1 s interval");
    const { code, output } = await router.stop("SIGTERM");
    assert.equal(code, 0, output);
    // A head that did not move is not checkpointed again, at the interval or at shutdown.
    const lines = (await Deno.readTextFile(path)).trim().split("\n");
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0]);
    assert.deepEqual([line.sequence, line.edr_hash, line.key_id, line.signature], [
      1,
      record.edr_hash,
      null,
      "unsigned",
    ]);
    const verify = await runTask(["verify", router.artifactsDir]);
    assert.equal(verify.code, 0, verify.output);
  } finally {
    await router.close();
  }
});

Deno.test("a policy naming a checkpoint key that is not set refuses to start, saying which", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hi-checkpoint-" });
  try {
    const policy = join(dir, "policy.json");
    await Deno.writeTextFile(
      policy,
      JSON.stringify({ policy_version: "t", checkpoints: { hmac_secret_env: "HI_TEST_CHECKPOINT_UNSET" } }),
    );
    const { code, output } = await runTask(["serve"], {
      HI_POLICY: policy,
      HI_PORT: "0",
      HI_ARTIFACTS_DIR: join(dir, "artifacts"),
    });
    assert.equal(code, 1, output);
    assert.match(output, /HI_TEST_CHECKPOINT_UNSET, which is not set; set it/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
