/**
 * The sandboxed half of `deno task replay`: `cli/replay.ts` re-executes this file with permissions
 * narrowed to the artifacts folder and the allowed hosts, so the safety defaults hold at the runtime
 * level too, not only in our own checks. Prints a human summary (or the report with `--json`) and exits
 * with the status's code.
 */
import { parseArgs } from "node:util";
import { join, relative, resolve } from "node:path";
import { EXIT_CODES, type ReasonCode, type ReplayStatus, worstStatus } from "./reason_codes.ts";
import { listEdrFiles, replayEdr, type ReplayResult } from "./replay.ts";
import type { ReplayReport } from "./report.ts";

/** Options of `runReplayCli`, mostly for tests. */
export interface RunReplayCliOptions {
  /** Where lines of human output go (default: stdout). */
  out?: (line: string) => void;
  /** Where warnings go (default: stderr). */
  err?: (line: string) => void;
  /** Injected fetch for the local Ollama calls (tests). */
  fetch?: typeof fetch;
}

/** The flags `deno task replay` takes; the launcher and the sandboxed runner parse the same ones. */
export const REPLAY_FLAGS = {
  "allow-side-effects": { type: "boolean", default: false },
  "allow-network": { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  all: { type: "string" },
  artifacts: { type: "string" },
} as const;

/** The usage text of `deno task replay`. */
export const REPLAY_USAGE = [
  "usage: deno task replay <edr.json> [--allow-side-effects] [--allow-network] [--json] [--artifacts DIR]",
  "       deno task replay --all <dir> [--allow-side-effects] [--allow-network] [--json] [--artifacts DIR]",
].join("\n");

/**
 * Runs a replay from already-resolved arguments (`--artifacts` and `--ollama-url` are required here;
 * the launcher fills them in) and returns the exit code.
 */
export async function runReplayCli(args: string[], options: RunReplayCliOptions = {}): Promise<number> {
  const out = options.out ?? ((line: string) => console.log(line));
  const err = options.err ?? ((line: string) => console.error(line));
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { ...REPLAY_FLAGS, "ollama-url": { type: "string" } },
    });
  } catch (error) {
    err(`${(error as Error).message}\n${REPLAY_USAGE}`);
    return EXIT_CODES.USAGE;
  }
  const { values, positionals } = parsed;
  const all = values.all;
  if ((all === undefined) === (positionals.length !== 1) || positionals.length > 1 || !values.artifacts) {
    err(REPLAY_USAGE);
    return EXIT_CODES.USAGE;
  }
  const common = {
    artifactsDir: values.artifacts,
    allowSideEffects: values["allow-side-effects"],
    allowNetwork: values["allow-network"],
    ollamaUrl: values["ollama-url"],
    fetch: options.fetch,
  };

  if (all === undefined) {
    const result = await safeReplay(positionals[0], common, err);
    if (result === null) return EXIT_CODES.ERROR;
    if (values.json) out(JSON.stringify(result.report, null, 2));
    else for (const line of describe(result)) out(line);
    return EXIT_CODES[result.report.status];
  }

  let files: string[];
  try {
    files = await listEdrFiles(await edrFolderOf(all));
  } catch (error) {
    err(`cannot list ${all} (${(error as Error).message}); pass a folder of edr files`);
    return EXIT_CODES.USAGE;
  }
  let worst: ReplayStatus = "MATCH";
  let failedToRun = false;
  const reports: ReplayReport[] = [];
  const byStatus = new Map<ReplayStatus, number>();
  const byCode = new Map<ReasonCode, number>();
  for (const file of files) {
    const result = await safeReplay(file, common, err);
    if (result === null) {
      failedToRun = true;
      continue;
    }
    const { report } = result;
    reports.push(report);
    worst = worstStatus(worst, report.status);
    byStatus.set(report.status, (byStatus.get(report.status) ?? 0) + 1);
    for (const code of report.reason_codes) byCode.set(code, (byCode.get(code) ?? 0) + 1);
    if (!values.json && report.status !== "MATCH") {
      out(`${report.status.padEnd(8)} ${report.reason_codes.join(",").padEnd(40)} ${relativeOr(file)}`);
    }
  }
  if (values.json) {
    out(JSON.stringify(
      {
        replayed: reports.length,
        worst_status: worst,
        by_status: Object.fromEntries(byStatus),
        by_reason_code: Object.fromEntries(byCode),
        reports,
      },
      null,
      2,
    ));
  } else {
    out(`replayed ${reports.length} record(s) under ${all}`);
    out("status     count");
    for (const status of ["MATCH", "DIVERGED", "REFUSED", "ERROR"] as const) {
      out(`${status.padEnd(10)} ${byStatus.get(status) ?? 0}`);
    }
    if (byCode.size > 0) {
      out("reason code                  count");
      for (const [code, count] of [...byCode].sort()) out(`${code.padEnd(28)} ${count}`);
    }
  }
  if (failedToRun) worst = worstStatus(worst, "ERROR");
  return EXIT_CODES[worst];
}

async function safeReplay(
  file: string,
  options: Parameters<typeof replayEdr>[1],
  err: (line: string) => void,
): Promise<ReplayResult | null> {
  try {
    return await replayEdr(file, options);
  } catch (error) {
    // Only our own I/O (the report write) can land here; a bad record is reported, not thrown.
    err(
      `replay of ${relativeOr(file)} could not finish (${
        (error as Error).message
      }); check the artifacts folder`,
    );
    return null;
  }
}

/** An artifacts folder given to `--all` means its `edr/` folder, not its inputs, policies and reports. */
async function edrFolderOf(dir: string): Promise<string> {
  try {
    if ((await Deno.stat(join(dir, "edr"))).isDirectory) return join(dir, "edr");
  } catch {
    // not an artifacts folder: walk it as given
  }
  return dir;
}

function relativeOr(path: string): string {
  const rel = relative(Deno.cwd(), resolve(path));
  return rel.startsWith("..") ? path : rel;
}

function describe(result: ReplayResult): string[] {
  const { report } = result;
  const lines = [`${report.status}${report.reason_codes.length ? ` ${report.reason_codes.join(", ")}` : ""}`];
  lines.push(`  record  ${report.edr_path}`);
  if (report.message) lines.push(`  ${report.message}`);
  for (const check of report.checks) {
    if (check.status === "skipped" && check.observed === null) continue;
    let line = `  ${check.status.padEnd(7)} ${check.name}`;
    if (check.status === "fail") {
      line += `: expected ${clip(check.expected)}, observed ${clip(check.observed)}`;
    } else if (check.status === "skipped") line += `: ${clip(check.observed)}`;
    lines.push(line);
  }
  lines.push(`  report  ${result.reportPath ?? "(not written; the message above says why)"}`);
  return lines;
}

function clip(value: string | null): string {
  if (value === null) return "null";
  return value.length > 120 ? value.slice(0, 119) + "…" : value;
}

if (import.meta.main) {
  Deno.exit(await runReplayCli(Deno.args));
}
