/**
 * `deno task demo`: the whole product in one command, on a machine with no Ollama and no keys. It starts
 * the sample upstreams from tests/fakes/ and the router on free ports, drives the router with the
 * official OpenAI SDK, prints what happened to each request, then verifies the EDRs it wrote and
 * replays one local and one cloud record with the real replay CLI. It stops everything it started.
 */
import OpenAI from "openai";
import { configFromEnv, startServer } from "../lib/http/mod.ts";
import type { EdrRecord } from "../lib/edr/mod.ts";
import { startFakeAnthropic } from "../tests/fakes/fake_anthropic.ts";
import { startFakeOllama } from "../tests/fakes/fake_ollama.ts";
import { startFakeOpenAI } from "../tests/fakes/fake_openai.ts";

const USAGE = `usage: deno task demo [--keep] [--help]

Shows the whole product on a machine with no Ollama and no keys: starts sample upstreams (Ollama,
Anthropic, OpenAI) and the router on free ports, sends four requests with the OpenAI SDK and prints who
served each and why, then verifies the EDRs it wrote and replays one local and one cloud record.
It stops everything it started, unless --keep: then it ends by printing the address of the EDR explorer
(/ui) of a router it leaves running over the demo's records until Ctrl-C. Environment:
  HI_ARTIFACTS_DIR   where the demo writes (default ./artifacts/demo; emptied first)
Exit codes: 0 when every step gave the expected result, 1 otherwise, 64 for a usage error.`;

const artifactsDir = Deno.env.get("HI_ARTIFACTS_DIR") ?? "./artifacts/demo";
const bold = (s: string) => (Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s);

async function main(keep: boolean): Promise<number> {
  await Deno.remove(artifactsDir, { recursive: true }).catch(() => {});
  const ollama = startFakeOllama();
  const anthropic = startFakeAnthropic();
  const openai = startFakeOpenAI();
  const quiet: string[] = [];
  // The router of the demo and the one --keep leaves running: the same sample upstreams and folder.
  const demoConfig = () =>
    configFromEnv({
      HI_PORT: "0",
      HI_ARTIFACTS_DIR: artifactsDir,
      OLLAMA_HOST: ollama.url,
      ANTHROPIC_BASE_URL: anthropic.url,
      ANTHROPIC_API_KEY: "sk-ant-test",
      OPENAI_BASE_URL: openai.url,
      OPENAI_API_KEY: "sk-test-openai",
    });
  const router = await startServer(demoConfig(), {
    log: (line) => quiet.push(line),
    requestLog: (line) => quiet.push(line),
  });
  try {
    await router.health.probeNow();
    console.log(bold(`hybrid-inference demo: router on ${router.url}`));
    console.log(`  sample upstreams: Ollama ${ollama.url}, Anthropic ${anthropic.url}, OpenAI ${openai.url}`);
    console.log(`  artifacts: ${artifactsDir}\n`);
    const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "demo", maxRetries: 0 });
    const ids: Record<string, string> = {};

    const local = await client.chat.completions
      .create({
        model: "auto",
        messages: [{ role: "user", content: "Say hello." }],
        seed: 42,
        temperature: 0,
      })
      .withResponse();
    ids.local = local.response.headers.get("x-request-id")!;
    await report("1. local answer", ids.local, `"${local.data.choices[0].message.content}"`);

    const stream = await client.chat.completions
      .create({
        model: "auto",
        messages: [{ role: "user", content: "Stream a short answer." }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let streamed = "";
    for await (const chunk of stream.data) streamed += chunk.choices[0]?.delta.content ?? "";
    ids.stream = stream.response.headers.get("x-request-id")!;
    await report("2. streamed answer", ids.stream, `"${streamed}"`);

    ollama.mode = "error500";
    const fallback = await client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "Answer even if local fails." }] })
      .withResponse();
    ids.cloud = fallback.response.headers.get("x-request-id")!;
    await report(
      "3. local fails (500), cloud answers",
      ids.cloud,
      `"${fallback.data.choices[0].message.content}"`,
    );
    ollama.mode = "normal";

    await ollama.stop();
    await router.health.probeNow();
    const refused = await fetch(`${router.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "auto",
        messages: [{ role: "user", content: "Summarise this patient record." }],
        routing_contract: { classification: "SENSITIVE" },
      }),
    });
    const refusal = await refused.json();
    ids.sensitive = refused.headers.get("x-request-id")!;
    await report(
      "4. SENSITIVE request while Ollama is down",
      ids.sensitive,
      `HTTP ${refused.status} ${refusal.error.code} (x-should-retry: ${
        refused.headers.get("x-should-retry")
      })`,
    );
    ollama.restart();
    await router.health.probeNow();

    await router.close();
    console.log(bold("\nAudit: verify every EDR the demo wrote"));
    const env = { HI_ARTIFACTS_DIR: artifactsDir, OLLAMA_HOST: ollama.url };
    const verify = await runTask(["verify", `${artifactsDir}/edr`], env);
    console.log(bold(`\nReplay the local record (deterministic re-execution against the local Ollama)`));
    const localReplay = await runTask(["replay", recordPath(ids.local)], env);
    console.log(bold(`\nReplay the cloud record without --allow-network (refused by the safety defaults)`));
    const cloudReplay = await runTask(["replay", recordPath(ids.cloud)], env);
    const ok = verify === 0 && localReplay === 0 && cloudReplay === 2;
    console.log(
      `\n${ok ? "demo complete" : "demo finished with unexpected results"}: verify exit ${verify}, ` +
        `local replay exit ${localReplay} (0 = MATCH), cloud replay exit ${cloudReplay} (2 = REFUSED)`,
    );
    if (keep) await keepExplorer();
    else console.log(`browse these records: deno task demo --keep, or deno task explore ${artifactsDir}`);
    return ok ? 0 : 1;
  } finally {
    await router.close();
    await Promise.all([ollama.close(), anthropic.close(), openai.close()]);
  }

  /** Serves the demo's records on a fresh router (same sample upstreams) until Ctrl-C or SIGTERM. */
  async function keepExplorer(): Promise<void> {
    const kept = await startServer(demoConfig(), { log: (line) => quiet.push(line) });
    const stopped = Promise.withResolvers<void>();
    const stop = () => stopped.resolve();
    for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
    console.log(bold(`\nEDR explorer: ${kept.url}/ui`));
    console.log(
      `  the router stays up with the sample upstreams; send it requests (${kept.url}/v1); Ctrl-C stops it`,
    );
    await stopped.promise;
    // The listeners stay until the process exits: a second signal while everything stops (deno task may
    // pass Ctrl-C on as well) must not kill the demo halfway with 130.
    await kept.close();
  }

  async function report(title: string, requestId: string, outcome: string): Promise<void> {
    const record = await findRecord(requestId);
    const where = record.decision.provider
      ? `${record.decision.provider}/${record.decision.model}`
      : "nobody";
    console.log(bold(title));
    console.log(`   served by: ${where} (path ${record.decision.path})   request id: ${requestId}`);
    console.log(`   reason codes: ${record.decision_factors.join(", ")}`);
    if (record.attempts.length > 1 || record.failure) {
      const tried = record.attempts.map((a) =>
        `${a.provider}:${a.outcome}${a.error_code ? `(${a.error_code})` : ""}`
      );
      console.log(
        `   attempts: ${tried.join(" -> ") || "none"}${
          record.failure ? `   failure: ${record.failure.type}` : ""
        }`,
      );
    }
    console.log(`   answer: ${outcome}`);
    console.log(`   EDR: ${recordPath(requestId)}\n`);
  }

  async function findRecord(requestId: string): Promise<EdrRecord> {
    // Files follow the durable log in quiet moments; flush() writes them now.
    await router.edr.flush();
    const path = await locate(requestId);
    if (!path) throw new Error(`no EDR found for ${requestId}`);
    return JSON.parse(await Deno.readTextFile(path));
  }

  function recordPath(requestId: string): string {
    return paths.get(requestId)!;
  }
}

const paths = new Map<string, string>();

async function locate(requestId: string): Promise<string | null> {
  if (paths.has(requestId)) return paths.get(requestId)!;
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".json")) {
        const record = JSON.parse(await Deno.readTextFile(path)) as EdrRecord;
        paths.set(record.request_id, path);
      }
    }
  };
  await walk(`${artifactsDir}/edr`).catch(() => {});
  return paths.get(requestId) ?? null;
}

async function runTask(args: string[], env: Record<string, string>): Promise<number> {
  const child = new Deno.Command("deno", {
    args: ["task", "-q", ...args],
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return (await child.status).code;
}

if (import.meta.main) {
  const keep = Deno.args.includes("--keep");
  const others = Deno.args.filter((arg) => arg !== "--keep");
  const stray = others.find((arg) => arg !== "--help" && arg !== "-h");
  if (stray !== undefined) {
    console.error(`error: unexpected argument "${stray}"; the options are --keep and --help`);
    console.error(USAGE);
    Deno.exit(64);
  }
  if (others.length > 0) {
    console.log(USAGE);
    Deno.exit(0);
  }
  Deno.exit(await main(keep));
}
