/**
 * `deno task serve` survives SIGKILL under load: every request whose complete response reached its client
 * has its EDR file after a restart, no file under `edr/` is damaged, and `deno task verify` finds the
 * chain intact end to end.
 */
import assert from "node:assert/strict";
import { type EdrRecord, validateEdr } from "../../lib/edr/mod.ts";
import { runTask, type ServedRouter, startServe } from "../e2e/serve_harness.ts";

const CLIENTS = 16;
/** Most requests one client sends per round; the kill comes long before all of them are done. */
const PER_CLIENT = 24;

/** Sends one request and returns its request id once the whole response has arrived (null if it did not). */
async function oneRequest(url: string, n: number): Promise<string | null> {
  const stream = n % 4 === 0;
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "auto",
        messages: [{ role: "user", content: `crash load ${n}` }],
        stream,
        ...(n % 3 === 0 ? { routing_contract: { classification: "SENSITIVE" } } : {}),
      }),
    });
    const requestId = response.headers.get("x-request-id");
    const text = await response.text();
    if (stream && response.status === 200 && !text.trimEnd().endsWith("data: [DONE]")) return null;
    if (!stream) JSON.parse(text);
    return requestId;
  } catch {
    return null; // the router died mid-request: the client never saw a complete response
  }
}

/**
 * Drives concurrent load until `killAfter` complete responses, then SIGKILLs the launcher and the server at
 * once (a crash of the service), and returns the ids answered.
 */
async function loadAndKill(served: ServedRouter, killAfter: number, round: number): Promise<string[]> {
  const answered: string[] = [];
  let killed: Promise<{ code: number; output: string }> | null = null;
  let dead = false;
  const client = async (c: number): Promise<void> => {
    for (let i = 0; i < PER_CLIENT && !dead; i++) {
      const id = await oneRequest(served.url, round * 10_000 + c * 100 + i);
      if (id === null) {
        if (killed) dead = true;
        continue;
      }
      answered.push(id);
      if (!killed && answered.length >= killAfter) {
        killed = served.stop("SIGKILL");
        killed.catch(() => {}); // awaited below, once the clients saw the crash
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
  const finishedFirst = killed === null;
  const { code, output } = await (killed ?? served.stop("SIGKILL"));
  assert.ok(!finishedFirst, `the load finished before the kill: ${output}`);
  assert.equal(code, 137, output);
  return answered;
}

async function readEdrTree(dir: string): Promise<{ records: EdrRecord[]; unparsable: string[] }> {
  const records: EdrRecord[] = [];
  const unparsable: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    for await (const entry of Deno.readDir(sub)) {
      const path = `${sub}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else {
        try {
          records.push(JSON.parse(await Deno.readTextFile(path)));
        } catch {
          unparsable.push(path);
        }
      }
    }
  };
  await walk(dir);
  return { records, unparsable };
}

Deno.test("EDRs of answered requests survive SIGKILL of deno task serve under load", async (t) => {
  const artifactsDir = await Deno.makeTempDir({ prefix: "hi-crash-" });
  const answered: string[] = [];
  const running = new Set<ServedRouter>();
  const serve = async () => {
    const served = await startServe({ artifactsDir, noCloudKeys: true });
    running.add(served);
    return served;
  };
  try {
    for (const round of [1, 2, 3]) {
      await t.step(
        `round ${round}: the router is killed mid-load and restarts on the same artifacts`,
        async () => {
          const served = await serve();
          await served.waitForOutput(/local health fit/);
          const ids = await loadAndKill(served, 30 + round * 15, round);
          assert.ok(ids.length >= 30 + round * 15);
          answered.push(...ids);
        },
      );
    }

    await t.step("a restarted router recovers, answers and stops cleanly", async () => {
      const served = await serve();
      await served.waitForOutput(/local health fit/);
      const id = await oneRequest(served.url, 1);
      assert.ok(id, "the recovered router answers");
      answered.push(id);
      const { code, output } = await served.stop("SIGTERM");
      assert.equal(code, 0, output);
      assert.ok(!output.includes("    at "), output);
    });

    await t.step("every request that got a complete response has exactly one EDR file", async () => {
      const { records, unparsable } = await readEdrTree(`${artifactsDir}/edr`);
      assert.deepEqual(unparsable, [], "no file under edr/ fails to parse");
      const byId = new Map<string, number>();
      for (const r of records) byId.set(r.request_id, (byId.get(r.request_id) ?? 0) + 1);
      const missing = answered.filter((id) => byId.get(id) !== 1);
      assert.deepEqual(
        missing,
        [],
        `${missing.length} of ${answered.length} answered requests lack their EDR`,
      );
      for (const r of records) {
        const valid = validateEdr(r);
        assert.ok(valid.valid, `${r.request_id}: ${valid.valid ? "" : valid.errors.join("; ")}`);
      }
    });

    await t.step("deno task verify reports the chain intact", async () => {
      const { code, stdout, output } = await runTask(["verify", "--json", `${artifactsDir}/edr`]);
      assert.equal(code, 0, output);
      const result = JSON.parse(stdout);
      assert.deepEqual(result.findings, []);
      assert.ok(result.records >= answered.length);
    });
  } finally {
    for (const served of running) await served.close();
    await Deno.remove(artifactsDir, { recursive: true });
  }
});
