/**
 * `deno task serve` is one process to the user: however it ends (SIGTERM, Ctrl-C, SIGKILL of the task or
 * of the launcher under it) the server ends with it and its port is free again. Every test runs the real
 * task from the project root, as a user does: deno task → cli/serve.ts (launcher) → main.ts (server).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type FakeOllama, startFakeOllama } from "../fakes/fake_ollama.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** How long a stop may take before a test fails (it is a bound, never a wait). */
const STOP_BOUND_MS = 15_000;

/** Resolves with `promise`, or rejects saying `what` did not happen within `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The pids of a process's children, from /proc (every thread's list). */
async function childPids(pid: number): Promise<number[]> {
  const pids: number[] = [];
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    const text = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/children`).catch(() => "");
    pids.push(...text.split(" ").filter((s) => s !== "").map(Number));
  }
  return pids;
}

/** A process's command line, or "" when it is gone or a zombie. */
async function commandLine(pid: number): Promise<string> {
  const raw = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
  return raw.replaceAll("\0", " ").trim();
}

/** Live processes running main.ts with a given artifacts folder (its path is in their permission flags). */
async function serversFor(artifactsDir: string): Promise<number[]> {
  const found: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmd = await commandLine(Number(entry.name));
    if (cmd.includes("main.ts") && cmd.includes(artifactsDir)) found.push(Number(entry.name));
  }
  return found;
}

/** Throws unless a TCP connection to the URL's host and port is refused. */
async function assertRefuses(url: string): Promise<void> {
  const { hostname, port } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, "");
  try {
    const conn = await Deno.connect({ hostname: host, port: Number(port) });
    conn.close();
  } catch (error) {
    assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
    return;
  }
  assert.fail(`${url} still accepts connections`);
}

/** A running `deno task serve` with its launcher and server pids and its output. */
interface ServeRun {
  task: Deno.ChildProcess;
  launcherPid: number;
  serverPid: number;
  /** The URL from the banner. */
  url: string;
  artifactsDir: string;
  /** Resolves with stdout and stderr once every process of the tree has closed them, that is, ended. */
  ended: Promise<{ stdout: string; stderr: string }>;
  /** Kills whatever is left, waits for the tree and removes the temp folder. */
  cleanup(): Promise<void>;
}

/** Starts `deno task -q serve` against a fake Ollama and waits for its banner. */
async function startServe(ollama: FakeOllama, host = "127.0.0.1"): Promise<ServeRun> {
  const dir = await Deno.makeTempDir({ prefix: "hi-launcher-" });
  const artifactsDir = `${dir}/artifacts`;
  const task = new Deno.Command("deno", {
    args: ["task", "-q", "serve"],
    cwd: root,
    env: {
      HI_HOST: host,
      HI_PORT: "0",
      HI_ARTIFACTS_DIR: artifactsDir,
      HI_POLICY: "",
      OLLAMA_HOST: ollama.url,
      OPENAI_API_KEY: "",
      ANTHROPIC_API_KEY: "",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(task.stderr).text();
  const reader = task.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  const banner = /listening on (http:\/\/\S+)/;
  while (!banner.test(stdout)) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  const rest = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      stdout += value;
    }
  })();
  const ended = Promise.all([rest, stderr]).then(([, err]) => ({ stdout, stderr: err }));
  const url = stdout.match(banner)?.[1];
  let launcherPid = 0;
  let serverPid = 0;
  if (url) {
    [launcherPid] = await childPids(task.pid);
    [serverPid] = launcherPid ? await childPids(launcherPid) : [];
  }
  const run: ServeRun = {
    task,
    launcherPid,
    serverPid,
    url: url ?? "",
    artifactsDir,
    ended,
    async cleanup() {
      for (const pid of [serverPid, launcherPid]) {
        // Only our own processes: a pid is killed while its command line still names this run's folder
        // or the launcher.
        const cmd = pid ? await commandLine(pid) : "";
        if (cmd.includes(artifactsDir) || cmd.includes("cli/serve.ts")) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Already gone.
          }
        }
      }
      try {
        task.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await task.status;
      await ended;
      await Deno.remove(dir, { recursive: true });
    },
  };
  if (!url) {
    await run.cleanup();
    throw new Error(`deno task serve printed no banner: ${(await ended).stderr}`);
  }
  assert.match(await commandLine(launcherPid), /cli\/serve\.ts/, "the task's child is the launcher");
  assert.match(
    await commandLine(serverPid),
    /main\.ts --exit-with-stdin/,
    "the launcher's child is the server",
  );
  return run;
}

/** Asserts the whole tree has ended, the port is free and no server with this run's folder is left. */
async function assertAllGone(run: ServeRun): Promise<{ stdout: string; stderr: string }> {
  const output = await within(STOP_BOUND_MS, "the end of the launcher and the server", run.ended);
  await assertRefuses(run.url);
  assert.deepEqual(await serversFor(run.artifactsDir), [], "no main.ts with this artifacts folder remains");
  return output;
}

/** Asserts a stop said nothing alarming: no uncaught error, no stack trace. */
function assertQuietStop(stderr: string): void {
  assert.doesNotMatch(stderr, /Uncaught/);
  assert.doesNotMatch(stderr, /\n\s+at /);
  assert.doesNotMatch(stderr, /hybrid-inference stopped:/);
}

/** Runs one scenario against a fresh fake Ollama and serve task, cleaning up whatever happens. */
async function withServe(host: string, scenario: (run: ServeRun) => Promise<void>): Promise<void> {
  const ollama = startFakeOllama();
  try {
    const run = await startServe(ollama, host);
    try {
      await scenario(run);
    } finally {
      await run.cleanup();
    }
  } finally {
    await ollama.close();
  }
}

Deno.test("SIGTERM to deno task serve stops the server cleanly and exits 0", async () => {
  await withServe("127.0.0.1", async (run) => {
    run.task.kill("SIGTERM");
    const status = await within(STOP_BOUND_MS, "the task's exit", run.task.status);
    const { stderr } = await assertAllGone(run);
    assert.equal(status.code, 0, stderr);
    assertQuietStop(stderr);
  });
});

Deno.test("SIGINT to deno task serve stops the server cleanly and exits 0", async () => {
  await withServe("127.0.0.1", async (run) => {
    run.task.kill("SIGINT");
    const status = await within(STOP_BOUND_MS, "the task's exit", run.task.status);
    const { stderr } = await assertAllGone(run);
    assert.equal(status.code, 0, stderr);
    assertQuietStop(stderr);
  });
});

Deno.test("Ctrl-C in a terminal (SIGINT to task, launcher and server at once) stops once and exits 0", async () => {
  await withServe("127.0.0.1", async (run) => {
    Deno.kill(run.serverPid, "SIGINT");
    Deno.kill(run.launcherPid, "SIGINT");
    run.task.kill("SIGINT");
    const status = await within(STOP_BOUND_MS, "the task's exit", run.task.status);
    const { stderr } = await assertAllGone(run);
    assert.equal(status.code, 0, stderr);
    assertQuietStop(stderr);
  });
});

Deno.test("kill -9 of the launcher stops the server and frees its port", async () => {
  await withServe("127.0.0.1", async (run) => {
    Deno.kill(run.launcherPid, "SIGKILL");
    await within(STOP_BOUND_MS, "the task's exit", run.task.status);
    const { stderr } = await assertAllGone(run);
    assertQuietStop(stderr);
  });
});

Deno.test("kill -9 of the deno task process stops the launcher and the server and frees the port", async () => {
  await withServe("127.0.0.1", async (run) => {
    run.task.kill("SIGKILL");
    await run.task.status;
    const { stderr } = await assertAllGone(run);
    assertQuietStop(stderr);
  });
});

function hasIpv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "HI_HOST=::1 listens on the IPv6 loopback and answers a chat request there",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    await withServe("::1", async (run) => {
      assert.match(run.url, /^http:\/\/\[::1\]:\d+$/);
      const response = await fetch(`${run.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] }),
      });
      const body = await response.json();
      assert.equal(response.status, 200, JSON.stringify(body));
      assert.equal(body.model, "qwen3:8b");
      run.task.kill("SIGTERM");
      assert.equal((await within(STOP_BOUND_MS, "the task's exit", run.task.status)).code, 0);
      await assertAllGone(run);
    });
  },
});

/** Runs a task to its end with a command line and returns its exit code and output. */
async function runTask(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command("deno", {
    args: ["task", "-q", ...args],
    cwd: root,
    env: { HI_PORT: "0", HI_ARTIFACTS_DIR: "/nonexistent/hi-help-must-not-write" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: output.code, stdout: text.decode(output.stdout), stderr: text.decode(output.stderr) };
}

Deno.test("--help prints usage and exits 0; an unknown flag exits 64 with usage on stderr", async (t) => {
  await t.step("serve --help prints usage and starts nothing", async () => {
    const run = await runTask(["serve", "--help"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /usage/);
    assert.match(run.stdout, /HI_PORT/);
    assert.doesNotMatch(run.stdout + run.stderr, /listening/);
  });

  await t.step("demo --help prints usage and runs no demo", async () => {
    const run = await runTask(["demo", "--help"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /usage/);
    assert.doesNotMatch(run.stdout, /demo: router on/);
  });

  await t.step("authority --help prints usage", async () => {
    const run = await runTask(["authority", "--help"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /usage/);
    assert.equal(run.stderr, "");
  });

  for (const command of ["serve", "demo"]) {
    await t.step(`${command} --bogus exits 64 and names the flag`, async () => {
      const run = await runTask([command, "--bogus"]);
      assert.equal(run.code, 64, run.stderr);
      assert.match(run.stderr, /"--bogus"/);
      assert.match(run.stderr, /usage/);
      assert.equal(run.stdout, "");
    });
  }
});
