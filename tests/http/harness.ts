/**
 * Starts the real router in-process against the fake upstreams on 127.0.0.1, with a fresh artifacts
 * folder, and gives tests what they need to look at: the fakes, the EDRs written, the log lines.
 *
 * Unit-level: it runs with the test's permissions (all of them), not the ones `deno task serve` grants.
 * Tests of what users see (EDR files, replay, leases, crashes) use tests/e2e/serve_harness.ts instead;
 * use this one only where a test needs internals (slot and health snapshots, probeNow(), injected
 * adapters or memory readings) and say why at the top of the test.
 */
import OpenAI from "openai";
import type { CloudProvider } from "../../lib/config/mod.ts";
import { BUILTIN_POLICY_SOURCE, parsePolicy } from "../../lib/contract/mod.ts";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import { configFromEnv, type RunningServer, type StartOptions, startServer } from "../../lib/http/mod.ts";
import { type FakeAnthropic, startFakeAnthropic } from "../fakes/fake_anthropic.ts";
import { type FakeOllama, startFakeOllama } from "../fakes/fake_ollama.ts";
import { type FakeOpenAI, startFakeOpenAI } from "../fakes/fake_openai.ts";

/** Options for `startHarness`. */
export interface HarnessOptions {
  /** Fields merged over the built-in policy. */
  policy?: Record<string, unknown>;
  /** Leave the cloud keys unset. */
  noCloudKeys?: boolean;
  /** Leave only this cloud provider configured. */
  only?: CloudProvider;
  start?: Omit<StartOptions, "policy" | "log">;
}

/** A running router with its fakes. */
export interface Harness {
  router: RunningServer;
  ollama: FakeOllama;
  openai: FakeOpenAI;
  anthropic: FakeAnthropic;
  artifactsDir: string;
  logs: string[];
  /** An official OpenAI SDK client pointed at the router, without retries. */
  client: OpenAI;
  /** Every EDR file written so far (after the writer flushed). */
  records(): Promise<EdrRecord[]>;
  /** The EDR whose request_id is given. */
  record(requestId: string): Promise<EdrRecord>;
  /** Re-reads local health now (instead of waiting for the probe interval). */
  probe(): Promise<void>;
  close(): Promise<void>;
}

/** Starts fakes and the router; `close()` stops everything it started. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const ollama = startFakeOllama();
  const openai = startFakeOpenAI();
  const anthropic = startFakeAnthropic();
  const artifactsDir = await Deno.makeTempDir({ prefix: "hi-test-" });
  const logs: string[] = [];
  const env: Record<string, string> = {
    HI_PORT: "0",
    HI_ARTIFACTS_DIR: artifactsDir,
    OLLAMA_HOST: ollama.url,
    OPENAI_BASE_URL: openai.url,
    ANTHROPIC_BASE_URL: anthropic.url,
  };
  if (!options.noCloudKeys && options.only !== "openai") env.ANTHROPIC_API_KEY = "sk-ant-test";
  if (!options.noCloudKeys && options.only !== "anthropic") env.OPENAI_API_KEY = "sk-test-openai";
  const policy = parsePolicy({ ...BUILTIN_POLICY_SOURCE, ...options.policy });
  const router = await startServer(configFromEnv(env), {
    ...options.start,
    policy,
    log: (line) => logs.push(line),
    requestLog: (line) => logs.push(line),
  });
  await router.health.probeNow();
  const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "sk-client", maxRetries: 0 });
  const records = async (): Promise<EdrRecord[]> => {
    await router.edr.flush?.();
    const out: EdrRecord[] = [];
    const walk = async (dir: string): Promise<void> => {
      for await (const entry of Deno.readDir(dir)) {
        const path = `${dir}/${entry.name}`;
        if (entry.isDirectory) await walk(path);
        else if (entry.name.endsWith(".json")) out.push(JSON.parse(await Deno.readTextFile(path)));
      }
    };
    try {
      await walk(`${artifactsDir}/edr`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return out.sort((a, b) => a.sequence - b.sequence);
  };
  return {
    router,
    ollama,
    openai,
    anthropic,
    artifactsDir,
    logs,
    client,
    records,
    async record(requestId) {
      const found = (await records()).filter((r) => r.request_id === requestId);
      if (found.length !== 1) throw new Error(`expected one EDR for ${requestId}, found ${found.length}`);
      return found[0];
    },
    probe: () => router.health.probeNow(),
    async close() {
      await router.close();
      await Promise.all([ollama.close(), openai.close(), anthropic.close()]);
      await Deno.remove(artifactsDir, { recursive: true });
    },
  };
}
