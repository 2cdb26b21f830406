/**
 * `deno task explore [DIR] [--port N]`: the EDR explorer (the router's `/ui` and `/api/`) over an
 * artifacts folder, offline, on 127.0.0.1. This launcher resolves the folder and runs the explorer
 * (cli/explore_server.ts) with permissions narrowed to reading that folder and the page's files, the
 * network on 127.0.0.1 only, and no write at all. Ctrl-C stops it.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const USAGE = `usage: deno task explore [DIR] [--port N] [--help]

Serves the EDR explorer over an artifacts folder (DIR, default ./artifacts; the folder that holds edr/
and wal/) on http://127.0.0.1:PORT/ui and prints that address. It only reads: permissions are read on DIR
and the page's ui/ folder, network on 127.0.0.1 only, no write. The Replay button re-executes a local
record on the Ollama named by OLLAMA_HOST when it is on 127.0.0.1 (default 127.0.0.1:11434), and
reaches nothing else.
  --port N   listen on this port (default 0: a free port)
Exit codes: 0 after Ctrl-C, 1 when the folder cannot be served, 64 for a usage error.`;

const UI_DIR = fileURLToPath(new URL("../ui/", import.meta.url));
const SERVER = fileURLToPath(new URL("./explore_server.ts", import.meta.url));

function usageError(message: string): never {
  console.error(`error: ${message}\n${USAGE}`);
  Deno.exit(64);
}

if (import.meta.main) {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      strict: true,
      options: {
        port: { type: "string", default: "0" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    usageError((error as Error).message);
  }
  if (parsed.values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (parsed.positionals.length > 1) usageError("pass at most one folder");
  const port = Number(parsed.values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) usageError("--port takes a port number (0-65535)");
  // `deno task` runs in the repository; a relative folder means the one the user typed it in.
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const dir = resolve(base, parsed.positionals[0] ?? "artifacts");
  let hasRecords = false;
  for (const sub of ["edr", "wal"]) {
    try {
      if ((await Deno.stat(resolve(dir, sub))).isDirectory) hasRecords = true;
    } catch {
      // not there
    }
  }
  if (!hasRecords) {
    console.error(
      `error: ${dir} holds no edr/ or wal/ folder; pass the artifacts folder the router writes (HI_ARTIFACTS_DIR)`,
    );
    Deno.exit(1);
  }
  const child = new Deno.Command("deno", {
    args: [
      "run",
      `--allow-read=${dir},${UI_DIR}`,
      "--allow-net=127.0.0.1",
      "--allow-env=OLLAMA_HOST",
      SERVER,
      dir,
      String(port),
    ],
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    });
  }
  const status = await child.status;
  // Stopped by Ctrl-C is a normal end.
  Deno.exit(status.signal === "SIGINT" || status.signal === "SIGTERM" ? 0 : status.code);
}
