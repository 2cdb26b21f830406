/**
 * `deno task verify [dir] [--day YYYY-MM-DD] [--json] [--expect-head HASH] [--checkpoint-key-file FILE]`: checks
 * an EDR tree
 * (default `$HI_ARTIFACTS_DIR/edr`, else `./artifacts/edr`) for altered, missing, duplicated, misplaced or
 * reordered records, a missing write-ahead log, and tails cut or re-chained after a signed checkpoint,
 * naming each. Exit 0 when intact, 1 on any finding, 3 when verify itself cannot finish (a folder or log it
 * cannot read), 64 on a usage error. Needs only read permission.
 *
 * `deno task verify --database URL [--json]` checks every chain in the PostgreSQL EDR store instead, with
 * the same checks (lib/fleet/pg_verify.ts). The task grants no network; given a database, verify starts
 * itself again with --allow-net for that database's host:port only, the way cli/serve.ts scopes the server.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { type VerifyFinding, type VerifyResult, verifyTree } from "../lib/replay/mod.ts";
import {
  databaseReason,
  type DatabaseTarget,
  openDatabase,
  parseDatabaseUrl,
  verifyDatabase,
} from "../lib/fleet/pg.ts";

const USAGE =
  "usage: deno task verify [dir] [--day YYYY-MM-DD] [--json] [--expect-head HASH]... [--checkpoint-key-file FILE]\n" +
  "       deno task verify --database URL [--json] [--checkpoint-key-file FILE]\n" +
  "  dir: an artifacts folder or its edr/ folder (default $HI_ARTIFACTS_DIR/edr or ./artifacts/edr)\n" +
  "  --day YYYY-MM-DD: check only that UTC day (its record files, write-ahead log and checkpoints)\n" +
  "  --expect-head HASH: an edr_hash taken from GET /v1/edr/head that must still be in a day's chain\n" +
  "  --checkpoint-key-file FILE: the checkpoint HMAC secret (the value of the policy's " +
  "checkpoints.hmac_secret_env), to check checkpoint signatures\n" +
  "  --database URL: verify every chain in the PostgreSQL EDR store (postgres://user:password@host:port/db)\n" +
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
        day: { type: "string" },
        database: { type: "string" },
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
  const database = parsed.values.database;
  if (database !== undefined) {
    if (parsed.positionals.length > 0 || parsed.values["expect-head"].length > 0 || parsed.values.day) {
      console.error(
        `--database verifies the database only; give no folder, --day or --expect-head\n${USAGE}`,
      );
      return 64;
    }
    let target: DatabaseTarget;
    try {
      target = parseDatabaseUrl(database);
    } catch (error) {
      console.error(`${(error as Error).message.replace("HI_DATABASE_URL", "--database")}\n${USAGE}`);
      return 64;
    }
    const secret = await checkpointSecretOf(parsed.values["checkpoint-key-file"]);
    if (typeof secret === "number") return secret;
    return await verifyDatabaseCli(target, parsed.values.json, secret);
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
  const checkpointSecret = await checkpointSecretOf(parsed.values["checkpoint-key-file"]);
  if (typeof checkpointSecret === "number") return checkpointSecret;
  const day = parsed.values.day;
  if (day !== undefined && !isDay(day)) {
    console.error(`--day ${day} is not a day; pass a UTC date as YYYY-MM-DD\n${USAGE}`);
    return 64;
  }

  const bar = Deno.stderr.isTerminal() ? progressBar() : undefined;
  let result;
  try {
    result = await verifyTree(dir, {
      onProgress: bar?.update,
      expectHeads,
      checkpointSecret,
      day,
    });
  } catch (error) {
    console.error(`verify could not finish: ${(error as Error).message}`);
    return 3;
  } finally {
    bar?.done();
  }

  return report(result, parsed.values.json, {
    finding: (f) => f.message,
    intact: day === undefined ? `in ${result.days} day(s) under ${dir}` : `on ${day} under ${dir}`,
    damaged: day === undefined ? `under ${dir}` : `on ${day} under ${dir}`,
  });
}

/** Whether `text` is a real calendar day written YYYY-MM-DD. */
function isDay(text: string): boolean {
  const time = Date.parse(`${text}T00:00:00Z`);
  return /^\d{4}-\d{2}-\d{2}$/.test(text) && !Number.isNaN(time) &&
    new Date(time).toISOString().startsWith(text);
}

/** How `report` says where the findings are. */
interface ReportWording<F> {
  /** A finding's line after its kind. */
  finding: (finding: F) => string;
  /** What follows "intact: N record(s) ", and "F finding(s) in N record(s) ". */
  intact: string;
  damaged: string;
}

/** Prints a verify result (as JSON, or a line per finding and a summary) and returns the exit code. */
function report<F extends VerifyFinding>(
  result: Omit<VerifyResult, "findings" | "days" | "peak_day_bytes"> & { findings: F[] },
  json: boolean,
  wording: ReportWording<F>,
): number {
  if (json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    for (const f of result.findings) console.log(`${f.kind.toUpperCase().padEnd(18)} ${wording.finding(f)}`);
    if (result.findings_omitted > 0) {
      console.log(`… and ${result.findings_omitted} more finding(s), not listed`);
    }
    const total = result.findings.length + result.findings_omitted;
    console.log(
      result.ok
        ? `intact: ${result.records} record(s) ${wording.intact}`
        : `${total} finding(s) in ${result.records} record(s) ${wording.damaged}`,
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

/** The checkpoint secret from `--checkpoint-key-file`, undefined without one, or 64 (usage) when unreadable. */
async function checkpointSecretOf(keyFile: string | undefined): Promise<string | undefined | number> {
  if (keyFile === undefined) return undefined;
  let secret: string;
  try {
    secret = (await Deno.readTextFile(keyFile)).replace(/\r?\n$/, "");
  } catch (error) {
    console.error(
      `cannot read the checkpoint key file ${keyFile} (${(error as Error).message}); pass a readable file`,
    );
    return 64;
  }
  if (secret === "") {
    console.error(`the checkpoint key file ${keyFile} is empty; put the checkpoint secret in it`);
    return 64;
  }
  return secret;
}

/**
 * Verifies the database. Without network permission for its host (as `deno task verify` starts), runs
 * this file again with --allow-net for that host:port only and returns the child's exit code.
 */
async function verifyDatabaseCli(
  target: DatabaseTarget,
  json: boolean,
  checkpointSecret: string | undefined,
): Promise<number> {
  const net = await Deno.permissions.query({ name: "net", host: target.netEntry });
  if (net.state !== "granted") {
    const child = new Deno.Command("deno", {
      args: [
        "run",
        "--allow-read",
        "--allow-env=HI_ARTIFACTS_DIR,PGAPPNAME",
        `--allow-net=${target.netEntry}`,
        new URL(import.meta.url).pathname,
        ...Deno.args,
      ],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    });
    return (await child.output()).code;
  }
  const sql = openDatabase(target, { max: 1, session: "primary" });
  let result;
  try {
    result = await verifyDatabase(sql, { checkpointSecret });
  } catch (error) {
    console.error(
      `verify could not finish: the database ${target.redacted} (${databaseReason(error, target)})`,
    );
    return 3;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  const where = `in ${result.chains} chain(s) of ${result.replicas} replica(s) in ${target.redacted}`;
  return report(result, json, { finding: (f) => `${f.chain} ${f.message}`, intact: where, damaged: where });
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
