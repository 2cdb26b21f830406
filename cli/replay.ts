/**
 * `deno task replay <edr.json> [--allow-side-effects] [--allow-network] [--json] [--artifacts DIR]`
 * `deno task replay --all <dir> [...]`
 *
 * A tiny launcher: it resolves the artifacts folder and the hosts replay may reach, then re-runs
 * `lib/replay/run_cli.ts` under Deno permissions that mirror the safety defaults (read the artifacts
 * folder, write only `<artifacts>/replay/`, network only to the local Ollama host, plus the cloud hosts
 * with `--allow-network`) and passes its exit code through. Exit codes: 0 MATCH, 1 DIVERGED, 2 REFUSED,
 * 3 ERROR, 64 usage (with `--all`, the worst status).
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";
import { parseOllamaHosts } from "../lib/config/mod.ts";
import {
  EXIT_CODES,
  REPLAY_FLAGS,
  REPLAY_USAGE,
  replayPermissionArgs,
  resolveArtifactsDir,
} from "../lib/replay/mod.ts";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { ...REPLAY_FLAGS, help: { type: "boolean", short: "h", default: false } },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${REPLAY_USAGE}`);
    return EXIT_CODES.USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(REPLAY_USAGE);
    return 0;
  }
  const target = values.all ?? positionals[0];
  if (target === undefined || positionals.length > (values.all === undefined ? 1 : 0)) {
    console.error(REPLAY_USAGE);
    return EXIT_CODES.USAGE;
  }
  const artifactsDir = await resolveArtifactsDir(target, {
    flag: values.artifacts,
    env: Deno.env.get("HI_ARTIFACTS_DIR"),
    tree: values.all !== undefined,
  });
  if (artifactsDir === null) {
    console.error(
      `cannot tell which artifacts folder ${target} belongs to; pass --artifacts DIR or set HI_ARTIFACTS_DIR`,
    );
    return EXIT_CODES.USAGE;
  }
  // The sandbox is granted real paths: Deno compares permission paths as text, so a grant on a symlink
  // would not cover the folder it leads to, and replay reads and writes through real paths only.
  let realArtifacts: string;
  try {
    realArtifacts = await Deno.realPath(artifactsDir);
  } catch {
    console.error(
      `the artifacts folder ${artifactsDir} cannot be found; pass --artifacts DIR or set HI_ARTIFACTS_DIR`,
    );
    return EXIT_CODES.USAGE;
  }
  const realTarget = await Deno.realPath(target).catch(() => resolve(target));
  let ollamaUrl: string;
  try {
    // Every listed host: a record is re-executed on the host that served it.
    ollamaUrl = parseOllamaHosts(Deno.env.get("OLLAMA_HOST")).join(",");
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}; fix it or unset it`);
    return EXIT_CODES.USAGE;
  }
  const permissions = replayPermissionArgs({
    artifactsDir: realArtifacts,
    target: realTarget,
    ollamaUrl,
    allowNetwork: values["allow-network"],
    openaiBaseUrl: Deno.env.get("OPENAI_BASE_URL"),
    anthropicBaseUrl: Deno.env.get("ANTHROPIC_BASE_URL"),
  });
  const here = dirname(fileURLToPath(import.meta.url));
  const inner = [
    "run",
    "--no-prompt",
    `--config=${join(here, "..", "deno.json")}`,
    ...permissions,
    join(here, "..", "lib", "replay", "run_cli.ts"),
    ...(values.all !== undefined ? ["--all", realTarget] : [realTarget]),
    `--artifacts=${realArtifacts}`,
    `--ollama-url=${ollamaUrl}`,
    ...(values["allow-side-effects"] ? ["--allow-side-effects"] : []),
    ...(values["allow-network"] ? ["--allow-network"] : []),
    ...(values.json ? ["--json"] : []),
  ];
  const child = new Deno.Command("deno", {
    args: inner,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const status = await child.status;
  return status.code;
}

Deno.exit(await main(Deno.args));
