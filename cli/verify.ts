/**
 * `deno task verify [dir] [--json] [--expect-head HASH] [--checkpoint-key-file FILE]`: checks an EDR tree
 * (default `$HI_ARTIFACTS_DIR/edr`, else `./artifacts/edr`) for altered, missing, duplicated, misplaced or
 * reordered records, a missing write-ahead log, and tails cut or re-chained after a signed checkpoint,
 * naming each. Exit 0 when intact, 1 on any finding, 3 when verify itself cannot finish (a folder or log it
 * cannot read), 64 on a usage error. Needs only read permission.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { verifyTree } from "../lib/replay/mod.ts";

const USAGE =
  "usage: deno task verify [dir] [--json] [--expect-head HASH]... [--checkpoint-key-file FILE]\n" +
  "  dir: an artifacts folder or its edr/ folder (default $HI_ARTIFACTS_DIR/edr or ./artifacts/edr)\n" +
  "  --expect-head HASH: an edr_hash taken from GET /v1/edr/head that must still be in a day's chain\n" +
  "  --checkpoint-key-file FILE: the checkpoint HMAC secret (the value of the policy's " +
  "checkpoints.hmac_secret_env), to check checkpoint signatures\n" +
  "exit codes: 0 intact, 1 findings, 3 verify could not finish, 64 usage";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean", default: false },
        "expect-head": { type: "string", multiple: true, default: [] },
        "checkpoint-key-file": { type: "string" },
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

  const expectHeads = parsed.values["expect-head"];
  const badHead = expectHeads.find((hash) => !/^[0-9a-f]{64}$/.test(hash));
  if (badHead !== undefined) {
    console.error(`--expect-head ${badHead} is not an edr_hash; pass 64 lower-case hex digits\n${USAGE}`);
    return 64;
  }
  let checkpointSecret: string | undefined;
  const keyFile = parsed.values["checkpoint-key-file"];
  if (keyFile !== undefined) {
    try {
      checkpointSecret = (await Deno.readTextFile(keyFile)).replace(/\r?\n$/, "");
    } catch (error) {
      console.error(
        `cannot read the checkpoint key file ${keyFile} (${(error as Error).message}); pass a readable file`,
      );
      return 64;
    }
    if (checkpointSecret === "") {
      console.error(`the checkpoint key file ${keyFile} is empty; put the checkpoint secret in it`);
      return 64;
    }
  }

  const bar = Deno.stderr.isTerminal() ? progressBar() : undefined;
  let result;
  try {
    result = await verifyTree(dir, { onProgress: bar?.update, expectHeads, checkpointSecret });
  } catch (error) {
    console.error(`verify could not finish: ${(error as Error).message}`);
    return 3;
  } finally {
    bar?.done();
  }

  if (parsed.values.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    for (const f of result.findings) console.log(`${f.kind.toUpperCase().padEnd(18)} ${f.message}`);
    const total = result.findings.length + result.findings_omitted;
    if (result.findings_omitted > 0) {
      console.log(`… and ${result.findings_omitted} more finding(s), not listed`);
    }
    console.log(
      result.ok
        ? `intact: ${result.records} record(s) in ${result.days} day(s) under ${dir}`
        : `${total} finding(s) in ${result.records} record(s) under ${dir}`,
    );
    if (result.checkpoints > 0) console.log(`${result.checkpoints} checkpoint(s) anchor the chains`);
    if (result.signatures_unchecked > 0) {
      console.log(
        `${result.signatures_unchecked} checkpoint signature(s) not checked; pass --checkpoint-key-file to check them`,
      );
    }
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
