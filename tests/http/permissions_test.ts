/**
 * Least privilege: `deno task serve` runs the router with network access only to its listen address and
 * the provider hosts, and write access only under HI_ARTIFACTS_DIR.
 */
import assert from "node:assert/strict";
import { serverPermissionFlags } from "../../cli/serve.ts";
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
