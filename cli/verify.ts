/**
 * `deno task verify [dir] [--json]`: checks an EDR tree (default `$HI_ARTIFACTS_DIR/edr`, else
 * `./artifacts/edr`) for altered, missing, duplicated, misplaced or reordered records, naming each.
 * Exit 0 when intact, 1 on any finding, 64 on a usage error. Needs only read permission.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { verifyTree } from "../lib/replay/mod.ts";

const USAGE = "usage: deno task verify [dir] [--json]   (dir: an artifacts folder or its edr/ folder; " +
  "defaults to $HI_ARTIFACTS_DIR/edr or ./artifacts/edr)";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 64;
  }
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.positionals.length > 1) {
    console.error(USAGE);
    return 64;
  }
  const given = parsed.positionals[0];
  const dir = given === undefined
    ? join(Deno.env.get("HI_ARTIFACTS_DIR") || "./artifacts", "edr")
    : await edrFolderOf(given);
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new Error("not a directory");
  } catch {
    console.error(`${dir} is not a folder; pass the edr folder to verify`);
    return 64;
  }

  const bar = Deno.stderr.isTerminal() ? progressBar() : undefined;
  const result = await verifyTree(dir, { onProgress: bar?.update });
  bar?.done();

  if (parsed.values.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    for (const f of result.findings) console.log(`${f.kind.toUpperCase().padEnd(12)} ${f.message}`);
    console.log(
      result.ok
        ? `intact: ${result.records} record(s) in ${result.days} day(s) under ${dir}`
        : `${result.findings.length} finding(s) in ${result.records} record(s) under ${dir}`,
    );
  }
  return result.ok ? 0 : 1;
}

/** The EDR folder for a given path: an artifacts folder (one holding `edr/`) means its `edr/`. */
async function edrFolderOf(path: string): Promise<string> {
  try {
    if ((await Deno.stat(join(path, "edr"))).isDirectory) return join(path, "edr");
  } catch {
    // Not an artifacts folder: the path is the EDR folder itself.
  }
  return path;
}

function progressBar() {
  const encoder = new TextEncoder();
  let last = -1;
  return {
    update(done: number, total: number) {
      const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
      if (pct === last) return;
      last = pct;
      const filled = Math.round(pct / 4);
      Deno.stderr.writeSync(
        encoder.encode(`\r[${"#".repeat(filled)}${".".repeat(25 - filled)}] ${done}/${total}`),
      );
    },
    done() {
      if (last >= 0) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    },
  };
}

Deno.exit(await main(Deno.args));
