/**
 * Runs the router the way users run it: `deno task serve` in the repository, with its least-privilege
 * launcher, against the fake upstreams on 127.0.0.1 and a fresh (or given) artifacts folder. Tests read
 * what a user would see: the HTTP answers, the process output and exit code, and the files on disk.
 */
import OpenAI from "openai";
import type { CloudProvider } from "../../lib/config/mod.ts";
import { BUILTIN_POLICY_SOURCE } from "../../lib/contract/mod.ts";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import { type FakeAnthropic, startFakeAnthropic } from "../fakes/fake_anthropic.ts";
import { type FakeOllama, type FakeOllamaOptions, startFakeOllama } from "../fakes/fake_ollama.ts";
import { type FakeOpenAI, startFakeOpenAI } from "../fakes/fake_openai.ts";

/** The repository root: where `deno task` finds deno.json. */
export const REPO_ROOT: string = new URL("../../", import.meta.url).pathname;

/** How long the harness waits for the banner, an output line or an EDR file before it gives up. */
const DEADLINE_MS = 15_000;
/** How long processes of the tree may take to exit after `deno task` itself did. */
const GRACE_MS = 2_000;

/** Options for `startServe`. */
export interface ServeOptions {
  /** The server policy, written as-is to a file passed in `HI_POLICY` (see `policyWith`); built-in without. */
  policy?: Record<string, unknown>;
  /** Leave both cloud keys unset. */
  noCloudKeys?: boolean;
  /** Set only this cloud provider's key. */
  only?: CloudProvider;
  /** More environment for the server (wins over what the harness sets). */
  env?: Record<string, string>;
  /** Use this artifacts folder (kept by `close()`); a fresh temporary one without. Reuse it to restart. */
  artifactsDir?: string;
  /**
   * Several local hosts: one fake Ollama per entry (its options), listed in this order in `OLLAMA_HOST`.
   * One fake with default options without it.
   */
  ollamas?: FakeOllamaOptions[];
  /**
   * Fakes to use instead of fresh ones (e.g. two routers sharing one fake Ollama); `close()` leaves
   * them running for their owner to close.
   */
  fakes?: { ollama: FakeOllama; openai: FakeOpenAI; anthropic: FakeAnthropic };
  /** Run under `ulimit -n <nofile>` (soft and hard open-file limit), as `bash -c 'ulimit -n N; exec deno task serve'`. */
  nofile?: number;
}

/** A `deno task serve` process with its fakes. */
export interface ServedRouter {
  /** The router's base URL from its "listening on" banner, `http://127.0.0.1:PORT`. */
  url: string;
  /** `HI_ARTIFACTS_DIR` of this process. */
  artifactsDir: string;
  /** The pid of the server itself (main.ts, under the launcher), for /proc readings. */
  serverPid: number;
  /** The first (or only) fake Ollama. */
  ollama: FakeOllama;
  /** Every fake Ollama, in `OLLAMA_HOST` order (`ollamas[0]` is `ollama`). */
  ollamas: FakeOllama[];
  openai: FakeOpenAI;
  anthropic: FakeAnthropic;
  /** An official OpenAI SDK client pointed at the router, without retries. */
  client: OpenAI;
  /** Everything the process printed so far, stdout and stderr interleaved as they arrived. */
  output(): string;
  /** Resolves with the first complete output line matching `p`; rejects if the process ends or time runs out. */
  waitForOutput(p: RegExp): Promise<string>;
  /**
   * The EDR files on disk, by sequence. Files follow the answer by a moment, so this first waits until
   * every record in the write-ahead log has its file (rejects naming the missing ones after a deadline).
   */
  records(): Promise<EdrRecord[]>;
  /** The one EDR file whose request_id is `requestId`, waiting for it to appear (rejects after a deadline). */
  record(requestId: string): Promise<EdrRecord>;
  /**
   * Sends `signal` (default SIGTERM) to `deno task serve` and waits for it to end. SIGKILL kills the whole
   * process tree at once (the launcher and the server), as a crash of the service would. Rejects if any
   * process of the tree outlives the `deno task` process (they are killed first).
   */
  stop(signal?: "SIGTERM" | "SIGINT" | "SIGKILL"): Promise<{ code: number; output: string }>;
  /** Stops the process if it runs, closes the fakes, removes temporary folders (not a given artifacts folder). */
  close(): Promise<void>;
}

/** A full policy: the built-in one with `overrides` replacing its top-level fields. */
export function policyWith(overrides: Record<string, unknown>): Record<string, unknown> {
  return { ...structuredClone(BUILTIN_POLICY_SOURCE), ...overrides };
}

/** The outer environment minus everything that configures the router or its providers. */
function inheritedEnv(): Record<string, string> {
  const router = /^(HI_|OLLAMA_|OPENAI_|ANTHROPIC_)/;
  return Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([name]) => !router.test(name)));
}

/**
 * Runs `deno task -q <args>` in the repository (e.g. verify, replay) with only `env` configuring it, and
 * returns its exit code and output (stdout, then stderr).
 */
export async function runTask(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; output: string; stdout: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", ...args],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: { ...inheritedEnv(), NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code, output: decode(stdout) + decode(stderr), stdout: decode(stdout) };
}

/** A process as /proc shows it: its parent and its start time (to tell a reused pid apart). */
interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
  start: string;
}

function procInfo(pid: number): ProcInfo | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { pid, ppid: Number(fields[1]), state: fields[0], start: fields[19] };
}

/** A process's command line, split into its arguments (empty once it is gone). */
function processArgs(pid: number): string[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

/** Every live descendant of `root` (children first found, deepest last). */
function descendants(root: number): ProcInfo[] {
  const all: ProcInfo[] = [];
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const info = procInfo(Number(entry.name));
      if (info && info.state !== "Z") all.push(info);
    }
  } catch {
    return [];
  }
  const out: ProcInfo[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        out.push(p);
        grew = true;
      }
    }
  }
  return out;
}

function stillRunning(p: ProcInfo): boolean {
  const now = procInfo(p.pid);
  return now !== null && now.start === p.start && now.state !== "Z";
}

function killQuietly(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* already gone */ }
}

/** Resolves when `check()` holds, re-checking on each file event under `dir` (and every 100 ms, as inotify can miss files in new folders). */
async function waitForFiles<T>(dir: string, check: () => Promise<T | null>, what: () => string): Promise<T> {
  const first = await check();
  if (first !== null) return first;
  const watcher = Deno.watchFs(dir, { recursive: true });
  const events = watcher[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    const deadline = new Promise<"deadline">((resolve) =>
      timer = setTimeout(() => resolve("deadline"), DEADLINE_MS)
    );
    let tick = Promise.withResolvers<"tick">();
    ticker = setInterval(() => tick.resolve("tick"), 100);
    let nextEvent = events.next();
    for (;;) {
      const woke = await Promise.race([nextEvent.then(() => "event" as const), tick.promise, deadline]);
      if (woke === "deadline") throw new Error(what());
      if (woke === "event") nextEvent = events.next();
      else tick = Promise.withResolvers<"tick">();
      const found = await check();
      if (found !== null) return found;
    }
  } finally {
    clearTimeout(timer);
    clearInterval(ticker);
    watcher.close();
  }
}

/** Every `*.json` under `dir`, parsed (a missing folder is empty). */
async function readRecords(dir: string): Promise<EdrRecord[]> {
  const out: EdrRecord[] = [];
  const walk = async (sub: string): Promise<void> => {
    for await (const entry of Deno.readDir(sub)) {
      const path = `${sub}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".json")) {
        const text = await Deno.readTextFile(path);
        try {
          out.push(JSON.parse(text));
        } catch { /* a file being renamed into place is whole; anything else shows up in verify */ }
      }
    }
  };
  try {
    await walk(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort((a, b) => a.sequence - b.sequence);
}

/** The request ids of every complete record line in the write-ahead logs under `walDir`. */
async function walRequestIds(walDir: string): Promise<Set<string>> {
  const ids = new Set<string>();
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(walDir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return ids;
    throw error;
  }
  for (const entry of entries) {
    if (!entry.isFile || !entry.name.endsWith(".log")) continue;
    let text = await Deno.readTextFile(`${walDir}/${entry.name}`);
    const nul = text.indexOf("\0");
    if (nul !== -1) text = text.slice(0, nul);
    for (const line of text.split("\n").slice(0, -1)) {
      try {
        const id = JSON.parse(line)?.record?.request_id;
        if (typeof id === "string") ids.add(id);
      } catch { /* a torn line is not durable */ }
    }
  }
  return ids;
}

/** Starts the fakes and `deno task serve`; resolves once the router printed its "listening on" banner. */
export async function startServe(options: ServeOptions = {}): Promise<ServedRouter> {
  const ollamas = options.fakes
    ? [options.fakes.ollama]
    : (options.ollamas ?? [{}]).map((o) => startFakeOllama(o));
  const ollama = ollamas[0];
  const openai = options.fakes?.openai ?? startFakeOpenAI();
  const anthropic = options.fakes?.anthropic ?? startFakeAnthropic();
  const tempDir = await Deno.makeTempDir({ prefix: "hi-serve-" });
  const artifactsDir = options.artifactsDir ?? `${tempDir}/artifacts`;
  await Deno.mkdir(artifactsDir, { recursive: true });
  const env: Record<string, string> = {
    ...inheritedEnv(),
    NO_COLOR: "1",
    HI_PORT: "0",
    HI_ARTIFACTS_DIR: artifactsDir,
    OLLAMA_HOST: ollamas.map((o) => o.url).join(","),
    OPENAI_BASE_URL: openai.url,
    ANTHROPIC_BASE_URL: anthropic.url,
  };
  if (!options.noCloudKeys && options.only !== "openai") env.ANTHROPIC_API_KEY = "sk-ant-test";
  if (!options.noCloudKeys && options.only !== "anthropic") env.OPENAI_API_KEY = openai.apiKey;
  if (options.policy) {
    env.HI_POLICY = `${tempDir}/policy.json`;
    await Deno.writeTextFile(env.HI_POLICY, JSON.stringify(options.policy, null, 2));
  }
  Object.assign(env, options.env);

  const command = options.nofile === undefined
    ? { program: Deno.execPath(), args: ["task", "-q", "serve"] }
    : {
      program: "bash",
      args: ["-c", `ulimit -n ${options.nofile} && exec "$0" task -q serve`, Deno.execPath()],
    };
  const child = new Deno.Command(command.program, {
    args: command.args,
    cwd: REPO_ROOT,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let out = "";
  let ended = false;
  const listeners = new Set<() => void>();
  const changed = () => {
    for (const listener of [...listeners]) listener();
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      out += text;
      changed();
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const finished = (async () => {
    const status = await child.status;
    await pumps;
    ended = true;
    changed();
    return status;
  })();
  /** Processes of the tree seen so far (the launcher and the server), to find any that outlive it. */
  const tree = new Map<number, ProcInfo>();
  const noteTree = () => {
    for (const p of descendants(child.pid)) tree.set(p.pid, p);
  };

  const waitForOutput = (p: RegExp): Promise<string> => {
    const pattern = new RegExp(p.source, p.flags.replace("g", ""));
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(out);
        if (m) {
          const lineEnd = out.indexOf("\n", m.index + m[0].length);
          if (lineEnd !== -1 || ended) {
            done();
            const lineStart = out.lastIndexOf("\n", m.index - 1) + 1;
            resolve(out.slice(lineStart, lineEnd === -1 ? undefined : lineEnd));
            return;
          }
        }
        if (ended) {
          done();
          reject(new Error(`deno task serve ended before printing ${pattern}; its output:\n${out}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`deno task serve printed nothing matching ${pattern} in ${DEADLINE_MS} ms:\n${out}`),
        );
      }, DEADLINE_MS);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  };

  const cleanupFiles = async () => {
    if (!options.fakes) {
      await Promise.all([...ollamas.map((o) => o.close()), openai.close(), anthropic.close()]);
    }
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  };

  let url: string;
  let serverPid = 0;
  try {
    const banner = await waitForOutput(/listening on (http:\/\/\S+)/);
    url = banner.match(/listening on (http:\/\/\S+)/)![1];
    noteTree();
    serverPid = [...tree.values()].find((p) => processArgs(p.pid).some((a) => a.endsWith("/main.ts")))?.pid ??
      0;
  } catch (error) {
    killAll("SIGKILL");
    await finished;
    await cleanupFiles();
    throw error;
  }

  function killAll(signal: Deno.Signal): void {
    noteTree();
    killQuietly(child.pid, signal);
    for (const p of tree.values()) if (stillRunning(p)) killQuietly(p.pid, signal);
  }

  let stopping: Promise<{ code: number; output: string }> | null = null;
  const stop = (signal: "SIGTERM" | "SIGINT" | "SIGKILL" = "SIGTERM") => {
    stopping ??= (async () => {
      if (!ended) {
        noteTree();
        if (signal === "SIGKILL") killAll("SIGKILL");
        else killQuietly(child.pid, signal);
      }
      const status = await Promise.race([
        child.status,
        new Promise<null>((resolve) => {
          const timer = setTimeout(() => resolve(null), DEADLINE_MS);
          child.status.finally(() => clearTimeout(timer));
        }),
      ]);
      // A server that outlives its launcher keeps the port (and these pipes) open: a bug users notice.
      // Killed processes may take a moment to exit; a graceful one has had its chance already.
      if (status !== null) await waitGone([...tree.values()], GRACE_MS);
      const survivors = [...tree.values()].filter(stillRunning);
      if (status === null || survivors.length > 0) {
        killAll("SIGKILL");
        await waitGone(survivors, DEADLINE_MS);
        await finished;
        throw new Error(
          status === null
            ? `deno task serve did not end within ${DEADLINE_MS} ms of ${signal}; it was killed. Output:\n${out}`
            : `deno task serve exited (${status.code}) after ${signal} but left processes running ` +
              `(pids ${survivors.map((p) => p.pid).join(", ")}); they were killed. Output:\n${out}`,
        );
      }
      await finished;
      return { code: status.code, output: out };
    })();
    return stopping;
  };

  let closed: Promise<void> | null = null;
  const edrDir = `${artifactsDir}/edr`;
  const recordsWithWal = async (): Promise<EdrRecord[]> => {
    let missing: string[] = [];
    return await waitForFiles(artifactsDir, async () => {
      const durable = await walRequestIds(`${artifactsDir}/wal`);
      const records = await readRecords(edrDir);
      const have = new Set(records.map((r) => r.request_id));
      missing = [...durable].filter((id) => !have.has(id));
      return missing.length === 0 ? records : null;
    }, () => `${missing.length} records in the WAL have no EDR file after ${DEADLINE_MS} ms: ${missing}`);
  };

  return {
    url,
    artifactsDir,
    serverPid,
    ollama,
    ollamas,
    openai,
    anthropic,
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-client", maxRetries: 0 }),
    output: () => out,
    waitForOutput,
    records: recordsWithWal,
    async record(requestId) {
      return await waitForFiles(artifactsDir, async () => {
        const mine = (await readRecords(edrDir)).filter((r) => r.request_id === requestId);
        if (mine.length > 1) throw new Error(`${mine.length} EDR files have request_id ${requestId}`);
        return mine[0] ?? null;
      }, () => `no EDR file with request_id ${requestId} appeared in ${DEADLINE_MS} ms`);
    },
    stop,
    close() {
      closed ??= (async () => {
        try {
          // A stop the test already made reported its outcome there.
          if (stopping) await stopping.catch(() => {});
          else await stop("SIGTERM");
        } finally {
          await cleanupFiles();
        }
      })();
      return closed;
    },
  };
}

/** Waits (bounded by `ms`) until the given processes are gone. */
async function waitGone(processes: ProcInfo[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (processes.some(stillRunning) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** `startServe`, then waits until the router has logged local health fit once (its first probe succeeded). */
export async function startServeHealthy(options: ServeOptions = {}): Promise<ServedRouter> {
  const served = await startServe(options);
  try {
    await served.waitForOutput(/local health fit/);
  } catch (error) {
    await served.close();
    throw error;
  }
  return served;
}
