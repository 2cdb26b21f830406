/**
 * The router survives SIGKILL under load: every request whose complete response reached its client has
 * its EDR file after a restart, no file under `edr/` is damaged, and the chain verifies end to end.
 */
import assert from "node:assert/strict";
import { type EdrRecord, validateEdr } from "../../lib/edr/mod.ts";
import { verifyTree } from "../../lib/replay/mod.ts";
import { type FakeOllama, startFakeOllama } from "../fakes/fake_ollama.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const CHILD = new URL("./crash_router_child.ts", import.meta.url).pathname;
const CLIENTS = 16;
/** Most requests one client sends per round; the kill comes long before all of them are done. */
const PER_CLIENT = 24;

/** A router child process and what it printed. */
interface Child {
  url: string;
  process: Deno.ChildProcess;
  /** Resolves with everything the child wrote on stderr, once it exits. */
  stderr: Promise<string>;
  /** Resolves once stdout ended. */
  stdoutDone: Promise<void>;
}

async function startChild(artifactsDir: string, ollama: FakeOllama): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD],
    cwd: REPO,
    env: {
      HI_HOST: "127.0.0.1",
      HI_PORT: "0",
      HI_ARTIFACTS_DIR: artifactsDir,
      HI_POLICY: "",
      OLLAMA_HOST: ollama.url,
      OPENAI_API_KEY: "",
      ANTHROPIC_API_KEY: "",
      NO_COLOR: "1",
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(process.stderr).text();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (!buffer.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      await process.stdin.close().catch(() => {});
      const status = await process.status;
      throw new Error(`router child exited (${status.code}) before serving: ${await stderr}`);
    }
    buffer += value;
  }
  const url = buffer.slice(0, buffer.indexOf("\n")).trim();
  const stdoutDone = (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return { url, process, stderr, stdoutDone };
}

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

/** Drives concurrent load until `killAfter` complete responses, SIGKILLs the child, returns the ids answered. */
async function loadAndKill(child: Child, killAfter: number, round: number): Promise<string[]> {
  const answered: string[] = [];
  let killed = false;
  let dead = false;
  const client = async (c: number): Promise<void> => {
    for (let i = 0; i < PER_CLIENT && !dead; i++) {
      const id = await oneRequest(child.url, round * 10_000 + c * 100 + i);
      if (id === null) {
        if (killed) dead = true;
        continue;
      }
      answered.push(id);
      if (!killed && answered.length >= killAfter) {
        killed = true;
        child.process.kill("SIGKILL");
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
  if (!killed) child.process.kill("SIGKILL");
  await child.process.stdin.close().catch(() => {});
  const status = await child.process.status;
  await child.stdoutDone;
  const stderr = await child.stderr;
  assert.ok(killed, `the load finished before the kill: ${stderr}`);
  assert.equal(status.signal, "SIGKILL");
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

Deno.test("EDRs of answered requests survive SIGKILL of the router under load", async (t) => {
  const ollama = startFakeOllama();
  const artifactsDir = await Deno.makeTempDir({ prefix: "hi-crash-" });
  const answered: string[] = [];
  try {
    for (const round of [1, 2, 3]) {
      await t.step(
        `round ${round}: the router is killed mid-load and restarts on the same artifacts`,
        async () => {
          const child = await startChild(artifactsDir, ollama);
          const ids = await loadAndKill(child, 30 + round * 15, round);
          assert.ok(ids.length >= 30 + round * 15);
          answered.push(...ids);
        },
      );
    }

    await t.step("a restarted router recovers and closes cleanly", async () => {
      const child = await startChild(artifactsDir, ollama);
      const id = await oneRequest(child.url, 1);
      assert.ok(id, "the recovered router answers");
      answered.push(id);
      await child.process.stdin.close();
      const status = await child.process.status;
      await child.stdoutDone;
      const stderr = await child.stderr;
      assert.equal(status.code, 0, stderr);
      assert.match(stderr, /recovered \d+ records/);
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

    await t.step("verify reports the chain intact", async () => {
      const result = await verifyTree(`${artifactsDir}/edr`);
      assert.deepEqual(result.findings, []);
      assert.ok(result.ok);
      assert.ok(result.records >= answered.length);
    });
  } finally {
    await ollama.close();
    await Deno.remove(artifactsDir, { recursive: true });
  }
});
