/**
 * Least privilege: `deno task serve` runs the router with network access only to its listen address and
 * the provider hosts, and write access only under HI_ARTIFACTS_DIR.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { listenEntry, serverPermissionFlags, WORKER_MODULE_DIRS } from "../../cli/serve.ts";
import { configFromEnv } from "../../lib/http/mod.ts";
import { startFakeOllama } from "../fakes/fake_ollama.ts";

const here = new URL(".", import.meta.url).pathname;

Deno.test("the serve launcher's permissions", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "hi-perm-" });
  try {
    const config = configFromEnv({
      HI_PORT: "18999",
      HI_ARTIFACTS_DIR: `${dir}/artifacts`,
      OLLAMA_HOST: "127.0.0.1:11434",
      OPENAI_API_KEY: "sk-x",
    });
    const flags = serverPermissionFlags(config, []);

    await t.step("allow the listen address, Ollama and keyed providers only", () => {
      const net = flags.find((f) => f.startsWith("--allow-net="))!;
      assert.deepEqual(net.slice("--allow-net=".length).split(",").sort(), [
        "127.0.0.1:11434",
        "127.0.0.1:18999",
        "api.openai.com",
      ]);
      assert.ok(!net.includes("anthropic"), "a provider without a key is not reachable");
    });

    await t.step("write an IPv6 listen address in brackets, as --allow-net parses it", () => {
      assert.equal(listenEntry("::1", 8088), "[::1]:8088");
      assert.equal(listenEntry("::", 0), "[::]:0");
      assert.equal(listenEntry("127.0.0.1", 8088), "127.0.0.1:8088");
      const v6 = serverPermissionFlags(
        configFromEnv({
          HI_HOST: "::1",
          HI_PORT: "0",
          HI_ARTIFACTS_DIR: `${dir}/a`,
          OLLAMA_HOST: "http://[::1]:11434",
        }),
        [],
      );
      const net = v6.find((f) => f.startsWith("--allow-net="))!;
      assert.deepEqual(net.slice("--allow-net=".length).split(",").sort(), ["[::1]:0", "[::1]:11434"]);
    });

    await t.step("allow every local host OLLAMA_HOST lists, each with its port", () => {
      const several = serverPermissionFlags(
        configFromEnv({
          HI_PORT: "0",
          HI_ARTIFACTS_DIR: `${dir}/a`,
          OLLAMA_HOST: "gpu1.lan,https://gpu2.lan/ollama,[::1]:7",
        }),
        [],
      );
      const net = several.find((f) => f.startsWith("--allow-net="))!;
      assert.deepEqual(net.slice("--allow-net=".length).split(",").sort(), [
        "127.0.0.1:0",
        "[::1]:7",
        "gpu1.lan:11434",
        "gpu2.lan:443",
      ]);
    });

    await t.step("deny a write outside the artifacts folder, a foreign host and unlisted env", async () => {
      await Deno.mkdir(`${dir}/artifacts`, { recursive: true });
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...flags,
          `${here}permission_probe.ts`,
          `${dir}/outside.txt`,
          `${dir}/artifacts/inside.txt`,
          "127.0.0.9:9",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const outcome = JSON.parse(new TextDecoder().decode(output.stdout));
      assert.equal(outcome.writeOutside, "NotCapable");
      assert.equal(outcome.writeInside, "ok");
      assert.equal(outcome.connectForbidden, "NotCapable");
      assert.equal(outcome.readHome, "NotCapable");
      assert.equal(outcome.envUnlisted, "NotCapable");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** `deno task serve` from the project root, as a user runs it. */
function serveCommand(env: Record<string, string>, stdout: "piped" | "null"): Deno.Command {
  return new Deno.Command("deno", {
    args: ["task", "-q", "serve"],
    cwd: new URL("../..", import.meta.url).pathname,
    env,
    stdout,
    stderr: "piped",
  });
}

/** Runs `deno task serve`; reads its stdout until a pattern shows, and stops it. */
function serveTask(env: Record<string, string>) {
  const child = serveCommand(env, "piped").spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  return {
    async readUntil(pattern: RegExp): Promise<string> {
      while (!pattern.test(output)) {
        const { value, done } = await reader.read();
        if (done) break;
        output += value;
      }
      return output;
    },
    async stop(): Promise<void> {
      reader.releaseLock();
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel();
    },
  };
}

Deno.test("deno task serve starts under those permissions and answers", async () => {
  const ollama = startFakeOllama();
  const dir = await Deno.makeTempDir({ prefix: "hi-serve-" });
  const serve = serveTask({ HI_PORT: "0", HI_ARTIFACTS_DIR: `${dir}/artifacts`, OLLAMA_HOST: ollama.url });
  try {
    const banner = await serve.readUntil(/listening on/);
    const url = banner.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)?.[1];
    assert.ok(url, banner);
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(body.model, "qwen3:8b");
  } finally {
    await serve.stop();
    await ollama.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task serve with no Ollama and no keys still starts and says what to configure", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hi-serve-" });
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const unreachable = `127.0.0.1:${(closed.addr as Deno.NetAddr).port}`;
  closed.close();
  const serve = serveTask({
    HI_PORT: "0",
    HI_ARTIFACTS_DIR: `${dir}/artifacts`,
    OLLAMA_HOST: unreachable,
    OPENAI_API_KEY: "",
    ANTHROPIC_API_KEY: "",
  });
  try {
    const output = await serve.readUntil(/requests get 503/);
    assert.match(output, /listening on http:\/\/127\.0\.0\.1:\d+/);
    assert.match(output, /no provider is usable yet/);
    assert.match(output, /OLLAMA_HOST/);
    assert.match(output, /ANTHROPIC_API_KEY \/ OPENAI_API_KEY/);
  } finally {
    await serve.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `deno task serve` to its end and returns its exit code and stderr. */
async function serveToEnd(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const output = await serveCommand(env, "null").output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("deno task serve that cannot start says why in one line, without a stack trace", async (t) => {
  await t.step("an artifacts folder under /dev, which scoped permissions cannot open", async () => {
    const { code, stderr } = await serveToEnd({ HI_PORT: "0", HI_ARTIFACTS_DIR: "/dev/shm/hi-artifacts" });
    assert.equal(code, 1);
    assert.match(
      stderr,
      /^hybrid-inference cannot start: HI_ARTIFACTS_DIR \/dev\/shm\/hi-artifacts is under \/dev/,
    );
    assert.match(stderr, /mount a tmpfs outside \/dev/);
    assert.doesNotMatch(stderr, /\n\s+at /);
  });

  await t.step("a listen port already taken", async () => {
    const dir = await Deno.makeTempDir({ prefix: "hi-serve-" });
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const { code, stderr } = await serveToEnd({
        HI_PORT: String((taken.addr as Deno.NetAddr).port),
        HI_ARTIFACTS_DIR: `${dir}/artifacts`,
      });
      assert.equal(code, 1);
      assert.match(stderr, /^hybrid-inference cannot start: .*(in use|AddrInUse)/i);
      assert.doesNotMatch(stderr, /\n\s+at /);
    } finally {
      taken.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
});

const lib = new URL("../../lib/", import.meta.url);

/** Every module under lib/ that a `new Worker(new URL("…", import.meta.url)…)` starts, as a path. */
async function workerModules(): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: URL): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(new URL(`${entry.name}/`, dir));
      if (!entry.isFile || !/\.[jt]sx?$/.test(entry.name)) continue;
      const file = new URL(entry.name, dir);
      const source = await Deno.readTextFile(file);
      const workers = [...source.matchAll(/new Worker\(/g)].length;
      const located = [
        ...source.matchAll(/new Worker\(\s*new URL\(\s*(["'`])([^"'`]+)\1\s*,\s*import\.meta\.url\s*\)/g),
      ];
      assert.equal(
        located.length,
        workers,
        `${fileURLToPath(file)} starts a worker this test cannot locate; ` +
          'write it as new Worker(new URL("./module.ts", import.meta.url)…)',
      );
      found.push(...located.map((m) => fileURLToPath(new URL(m[2], file))));
    }
  };
  await walk(lib);
  return found;
}

/** One module of `deno info --json`. */
interface InfoModule {
  specifier: string;
  error?: string;
  dependencies?: { code?: { specifier?: string } }[];
}

/** The modules a worker loads at run time: its graph along code imports (type-only ones are erased). */
async function workerGraph(worker: string): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", worker],
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, `deno info ${worker} failed: ${new TextDecoder().decode(output.stderr)}`);
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    roots: string[];
    modules: InfoModule[];
    redirects: Record<string, string>;
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const pending = [...info.roots];
  while (pending.length > 0) {
    const next = pending.pop()!;
    const specifier = info.redirects[next] ?? next;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    const module = bySpecifier.get(specifier);
    assert.ok(!module?.error, `deno info could not load ${specifier}: ${module?.error}`);
    for (const dependency of module?.dependencies ?? []) {
      if (dependency.code?.specifier) pending.push(dependency.code.specifier);
    }
  }
  return [...seen];
}

Deno.test("the launcher grants read on every module that worker threads load", async () => {
  const workers = await workerModules();
  assert.ok(workers.length > 0, "lib/ starts no worker: this test has nothing to guard, update it");
  for (const worker of workers) {
    for (const specifier of await workerGraph(worker)) {
      if (specifier.startsWith("node:")) continue;
      assert.ok(
        specifier.startsWith("file:"),
        `worker ${worker} loads ${specifier}, which is read from Deno's cache; grant read on the cache ` +
          "dir (deno info shows it) in WORKER_MODULE_DIRS in cli/serve.ts, or keep the worker free of it",
      );
      const path = fileURLToPath(specifier);
      assert.ok(
        WORKER_MODULE_DIRS.some((dir) => path.startsWith(dir.endsWith("/") ? dir : `${dir}/`)),
        `worker ${worker} loads ${path}, outside WORKER_MODULE_DIRS (${WORKER_MODULE_DIRS.join(", ")}); ` +
          "add its folder to WORKER_MODULE_DIRS in cli/serve.ts",
      );
    }
  }
});
