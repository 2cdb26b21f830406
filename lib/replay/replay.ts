/**
 * Replay of one EDR: the documented gates (parse, side effects, replayable, inputs, network, provider),
 * then every recomputation (record hash, input hash, decision, decision core hash, environment, output).
 * The record is untrusted input: nothing in it chooses a path outside the artifacts folder.
 */
import { join, relative, resolve } from "node:path";
import {
  canonicalJson,
  computeDecisionCoreHash,
  computeEdrHash,
  type EdrRecord,
  hashCanonical,
  outputHashOf,
  validateEdr,
} from "../edr/mod.ts";
import { isCloudProvider, parseOllamaHosts } from "../config/mod.ts";
import { decide, policySchema } from "../contract/mod.ts";
import type { ChatRequest } from "../canonical/mod.ts";
import { OllamaAdapter, type UpstreamFetch } from "../providers/mod.ts";
import { ROUTER_VERSION } from "../version.ts";
import {
  confinedRealPath,
  isInside,
  placeReport,
  reportFolderProblem,
  reportPathOf,
  resolvePointer,
} from "./paths.ts";
import { REASON_CODES, type ReasonCode, type ReplayStatus } from "./reason_codes.ts";
import {
  CHECK_ORDER,
  CHECK_REASON,
  type CheckName,
  type ReplayCheck,
  type ReplayReport,
  sealReport,
  writeReportAtomic,
} from "./report.ts";

/** Options of one replay. */
export interface ReplayOptions {
  /** The artifacts folder: captured inputs, policies, and where the report goes. */
  artifactsDir: string;
  /** Replay records whose `side_effects` is not `none`. */
  allowSideEffects?: boolean;
  /** Replay records served by a cloud provider (their output is never re-executed). */
  allowNetwork?: boolean;
  /**
   * The local Ollama host, or several separated by commas (`OLLAMA_HOST`'s forms); defaults to
   * `OLLAMA_HOST`, else 127.0.0.1:11434. A record served on a listed host is re-executed there; any other
   * local record on the first host.
   */
  ollamaUrl?: string;
  /** Injected fetch (tests); defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Clock for `replayed_at` (tests). */
  now?: () => Date;
  /** Give up on the local re-execution after this long (default 300 s: a cold model load is slow). */
  timeoutMs?: number;
  /** Write the report under `<artifacts>/replay/` (default true). */
  writeReport?: boolean;
}

/** A finished replay: the sealed report and where it was written (null when it could not be placed). */
export interface ReplayResult {
  report: ReplayReport;
  reportPath: string | null;
}

/** Turns `OLLAMA_HOST` into its first host's base URL (the rule of lib/config/ollama_host.ts). */
export function ollamaBaseUrl(value: string | undefined): string {
  return parseOllamaHosts(value)[0];
}

class Checks {
  #map = new Map<CheckName, ReplayCheck>();
  set(name: CheckName, status: ReplayCheck["status"], expected: unknown, observed: unknown): boolean {
    this.#map.set(name, { name, status, expected: show(expected), observed: show(observed) });
    return status !== "fail";
  }
  compare(name: CheckName, expected: unknown, observed: unknown): boolean {
    return this.set(name, show(expected) === show(observed) ? "pass" : "fail", expected, observed);
  }
  skip(name: CheckName, why: string | null, expected: unknown = null): void {
    this.#map.set(name, { name, status: "skipped", expected: show(expected), observed: why });
  }
  list(): ReplayCheck[] {
    return CHECK_ORDER.map((name) =>
      this.#map.get(name) ?? { name, status: "skipped", expected: null, observed: null }
    );
  }
  failed(): CheckName[] {
    return CHECK_ORDER.filter((name) => this.#map.get(name)?.status === "fail");
  }
}

function show(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  // Canonical text, so key order in the record cannot fake a difference.
  try {
    return canonicalJson(value);
  } catch {
    return String(value);
  }
}

function short(text: string, max = 200): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length > max ? oneLine.slice(0, max - 1) + "…" : oneLine;
}

function errorMessage(error: unknown): string {
  return short(error instanceof Error ? error.message : String(error));
}

/** Replays one EDR file and writes its report; never throws for a bad record (it reports it). */
export async function replayEdr(edrPath: string, options: ReplayOptions): Promise<ReplayResult> {
  const givenRoot = resolve(options.artifactsDir);
  const absPath = resolve(edrPath);
  // Every read and write goes through real paths inside the artifacts folder's real path: Deno's
  // permission flags compare path text, so a symlink under the folder could otherwise lead anywhere.
  let realRoot = givenRoot;
  let rootProblem: string | null = null;
  try {
    realRoot = await Deno.realPath(givenRoot);
  } catch {
    rootProblem =
      `the artifacts folder ${givenRoot} cannot be found; pass --artifacts with the folder that holds edr/`;
  }
  let shownPath = edrPath;
  for (const root of [givenRoot, realRoot]) {
    if (isInside(root, absPath)) shownPath = relative(root, absPath);
  }
  const flags = {
    allow_side_effects: options.allowSideEffects === true,
    allow_network: options.allowNetwork === true,
  };
  const checks = new Checks();
  const now = options.now ?? (() => new Date());
  let record: EdrRecord | null = null;
  let reportPath: string | null = null;

  const finish = async (
    status: ReplayStatus,
    codes: ReasonCode[],
    message: string | null,
  ): Promise<ReplayResult> => {
    const report = sealReport({
      report_version: "1.0.0",
      status,
      reason_codes: codes,
      message,
      edr_path: shownPath,
      request_id: record?.request_id ?? null,
      decision_core_hash: record?.decision_core_hash ?? null,
      flags,
      checks: checks.list(),
      router_version: ROUTER_VERSION,
      replayed_at: now().toISOString(),
    });
    let written: string | null = null;
    if (reportPath !== null && options.writeReport !== false) {
      written = await placeReport(realRoot, reportPath);
      await writeReportAtomic(written, report);
    }
    return { report, reportPath: written };
  };
  const unreadable = (observed: string, message: string) => {
    checks.set("parse", "fail", "EDR_v1.0.0 record", observed);
    return finish("ERROR", ["EXECUTION_ERROR"], message);
  };

  // 1. parse: unreadable, malformed or schema-invalid records are an execution error. The record must
  // really lie inside the artifacts folder: the text check first (nothing outside is touched), then its
  // real path (a symlink under edr/ that leads out is refused too).
  if (rootProblem !== null) return await unreadable("artifacts folder not found", rootProblem);
  const outside =
    "the edr file resolves outside the artifacts folder; replay it where the router wrote it, " +
    "or pass --artifacts with the folder that holds it";
  if (!isInside(givenRoot, absPath) && !isInside(realRoot, absPath)) {
    return await unreadable("outside the artifacts folder", outside);
  }
  const located = await confinedRealPath(realRoot, absPath);
  if (!located.ok) {
    return located.reason.includes("outside") ? await unreadable(located.reason, outside) : await unreadable(
      `unreadable: ${located.reason}`,
      "the edr file cannot be read; check the path and permissions",
    );
  }
  shownPath = relative(realRoot, located.path);
  let text: string;
  try {
    text = await Deno.readTextFile(located.path);
  } catch (error) {
    return await unreadable(
      `unreadable: ${errorMessage(error)}`,
      "the edr file cannot be read; check the path and permissions",
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's message quotes the file; keep it out of the report.
    return await unreadable("not valid JSON", "the edr file is not valid json; restore it from a backup");
  }
  const validity = validateEdr(parsed);
  // A pointer that breaks only its pattern (`../x`, `/etc/x`) is reported where operators look for
  // it, at the input-pointer gate, not as an unreadable record.
  const pointerOnly = !validity.valid && validity.errors.length > 0 &&
    validity.errors.every((e) => e.startsWith("/replay/required_inputs_pointer "));
  if (!validity.valid && !pointerOnly) {
    return await unreadable(
      `schema-invalid: ${short(validity.errors.slice(0, 5).join("; "), 300)}`,
      "the edr file does not match EDR_v1.0.0; run deno task verify to find what changed",
    );
  }
  record = parsed as EdrRecord;
  // Where the report goes is checked before anything runs: a replay whose report would land outside
  // the artifacts folder does not run at all.
  const plannedReport = reportPathOf(realRoot, record);
  if (plannedReport !== null && options.writeReport !== false) {
    const problem = await reportFolderProblem(realRoot, plannedReport);
    if (problem !== null) {
      checks.set("parse", "pass", "EDR_v1.0.0 record", "EDR_v1.0.0 record");
      return await finish(
        "ERROR",
        ["EXECUTION_ERROR"],
        `the report cannot be written: ${problem}; make it a real folder inside the artifacts folder and rerun`,
      );
    }
  }
  reportPath = plannedReport;
  checks.set(
    "parse",
    "pass",
    "EDR_v1.0.0 record",
    pointerOnly ? "EDR_v1.0.0 record except its input pointer" : "EDR_v1.0.0 record",
  );

  // 2. side effects.
  if (record.side_effects !== "none" && !flags.allow_side_effects) {
    checks.set("side_effects", "fail", "none", record.side_effects);
    return await finish(
      "REFUSED",
      ["SIDE_EFFECTS_NOT_ALLOWED"],
      `the record has side_effects "${record.side_effects}"; pass --allow-side-effects to replay it anyway`,
    );
  }
  checks.set("side_effects", "pass", record.side_effects, flags.allow_side_effects ? "allowed" : "none");

  // 3. replayable.
  if (!record.replay.replayable) {
    checks.set("replayable", "fail", "true", "false");
    return await finish(
      "ERROR",
      ["REPLAY_NOT_REPLAYABLE"],
      "the record is marked not replayable; nothing can be re-run for it",
    );
  }
  checks.set("replayable", "pass", "true", "true");

  // 4. required inputs: the captured request (through its pointer) and the stored policy.
  const pointer = record.replay.required_inputs_pointer;
  const input = await resolvePointer(realRoot, pointer);
  let capturedInput: unknown;
  let inputProblem: string | null = input.ok ? null : input.reason;
  if (input.ok) {
    try {
      capturedInput = JSON.parse(await Deno.readTextFile(input.path));
    } catch {
      inputProblem = "captured input is unreadable or not JSON";
    }
  }
  let storedPolicy: unknown;
  if (inputProblem === null) {
    const policyFile = await resolvePointer(realRoot, `policies/${record.policy_hash}.json`);
    if (!policyFile.ok) inputProblem = `stored policy: ${policyFile.reason}`;
    else {
      try {
        storedPolicy = JSON.parse(await Deno.readTextFile(policyFile.path));
      } catch {
        inputProblem = "stored policy is unreadable or not JSON";
      }
    }
  }
  if (inputProblem !== null) {
    checks.set("input_pointer", "fail", pointer, inputProblem);
    return await finish(
      "ERROR",
      ["INPUT_POINTER_MISSING"],
      `a required replay input is missing (${inputProblem}); restore it under the artifacts folder`,
    );
  }
  checks.set("input_pointer", "pass", pointer, "present inside the artifacts folder");

  // 5. network.
  const provider = record.decision.provider;
  const cloud = isCloudProvider(provider);
  if (cloud && !flags.allow_network) {
    checks.set("network", "fail", "local", provider);
    return await finish(
      "REFUSED",
      ["NETWORK_NOT_ALLOWED"],
      `the record was served by ${provider}; pass --allow-network to check its hashes and decision`,
    );
  }
  checks.set("network", "pass", provider ?? "none", cloud ? "allowed" : "not needed");

  // 6. provider: only the local Ollama protocol can be re-executed deterministically.
  const local = provider === "local" && record.decision.protocol === "ollama_chat" &&
    record.decision.model !== null;
  let providerUnsupported = false;
  if (cloud || (provider === "local" && !local)) {
    providerUnsupported = true;
    checks.set(
      "provider",
      "fail",
      "local ollama_chat",
      `${provider}/${record.decision.protocol ?? "none"}: output cannot be re-executed deterministically`,
    );
  } else {
    checks.set("provider", "pass", provider ?? "none", local ? "local re-execution" : "nothing was served");
  }

  // 7. recomputations. The ones that read nothing but the record and the artifacts run first and all
  // report; only a record whose own hashes and captured input hold is executed (re-running an edited
  // record proves nothing, and its model, options or prompt may be the edit).
  const edrOk = checks.compare("edr_hash", record.edr_hash, safe(() => computeEdrHash(record!)));
  const inputOk = checks.compare("input_hash", record.input_hash, safe(() => hashCanonical(capturedInput)));
  const policyOk = checks.compare("policy_hash", record.policy_hash, safe(() => hashCanonical(storedPolicy)));
  recomputeDecision(record, storedPolicy, policyOk, checks);
  const coreOk = checks.compare(
    "decision_core_hash",
    record.decision_core_hash,
    safe(() => computeDecisionCoreHash(record!)),
  );
  checks.compare("router_version", record.environment.router_version, ROUTER_VERSION);
  const broken = [
    edrOk ? null : "edr_hash",
    coreOk ? null : "decision_core_hash",
    inputOk ? null : "input_hash",
  ]
    .filter((name) => name !== null);

  let executionError: string | null = null;
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 300_000;
  if (local && broken.length > 0) {
    const why = `not executed: ${
      broken.join(", ")
    } does not hold, so the record is not what the router wrote`;
    checks.skip("ollama_version", why, record.environment.ollama_version);
    checks.skip("model_digest", why, record.environment.model_digest);
    checks.skip("output_hash", why, record.output_hash);
  } else if (local && record.decision.model !== null) {
    const baseUrl = replayHost(record, options.ollamaUrl ?? Deno.env.get("OLLAMA_HOST"));
    const env = await probeOllama(baseUrl, record.decision.model, doFetch, timeoutMs);
    if (env.error !== null) {
      executionError = `local ollama at ${baseUrl} is unreachable: ${env.error}`;
      checks.skip("ollama_version", executionError, record.environment.ollama_version);
      checks.skip("model_digest", executionError, record.environment.model_digest);
    } else {
      compareRecorded(checks, "ollama_version", record.environment.ollama_version, env.version);
      compareRecorded(
        checks,
        "model_digest",
        record.environment.model_digest,
        env.digest ?? "model not installed",
      );
    }
    if (record.output_hash === null) {
      checks.skip("output_hash", "no output was recorded; nothing to compare");
    } else if (executionError === null) {
      try {
        const observed = await reExecute(record, capturedInput as ChatRequest, baseUrl, doFetch, timeoutMs);
        checks.compare("output_hash", record.output_hash, observed);
      } catch (error) {
        executionError = `local re-execution failed: ${errorMessage(error)}`;
        checks.skip("output_hash", executionError, record.output_hash);
      }
    } else {
      checks.skip("output_hash", executionError, record.output_hash);
    }
  } else {
    const why = cloud
      ? "cloud output is never re-executed (replay makes no external calls)"
      : "nothing was served locally";
    checks.skip("ollama_version", why, record.environment.ollama_version);
    checks.skip("model_digest", why, record.environment.model_digest);
    checks.skip("output_hash", why, record.output_hash);
  }

  // A divergence outranks an error: it is a proven fact about the record, the error only a gap.
  const diverged = [...new Set(checks.failed().map((name) => CHECK_REASON[name]))]
    .filter((code) => (REASON_CODES.DIVERGED as readonly string[]).includes(code));
  if (diverged.length > 0) return await finish("DIVERGED", diverged, null);
  if (executionError !== null) {
    return await finish(
      "ERROR",
      ["EXECUTION_ERROR"],
      `${executionError}; start ollama (OLLAMA_HOST) with the recorded model and retry`,
    );
  }
  if (providerUnsupported) {
    return await finish(
      "ERROR",
      ["PROVIDER_NOT_SUPPORTED"],
      `hashes and decision hold, but ${provider} output cannot be re-executed; only local records replay fully`,
    );
  }
  return await finish("MATCH", [], null);
}

/** The host a local record is re-executed on: the one that served it when listed, else the first. */
function replayHost(record: EdrRecord, ollamaHost: string | undefined): string {
  const hosts = parseOllamaHosts(ollamaHost);
  const served = record.decision.local_host;
  return served !== undefined && hosts.includes(served) ? served : hosts[0];
}

function safe(fn: () => string): string {
  try {
    return fn();
  } catch (error) {
    return `cannot compute: ${errorMessage(error)}`;
  }
}

function compareRecorded(checks: Checks, name: CheckName, recorded: string | null, observed: string): void {
  // A value the router could not record cannot be contradicted; say so rather than fail.
  if (recorded === null) checks.skip(name, `not recorded; host reports ${observed}`);
  else checks.compare(name, recorded, observed);
}

function recomputeDecision(
  record: EdrRecord,
  storedPolicy: unknown,
  policyOk: boolean,
  checks: Checks,
): void {
  const recorded = {
    candidates: record.candidates,
    factors: record.decision_factors,
    constraints: record.constraints_applied,
  };
  const { health, slot, features, keys } = record.decision_inputs;
  if (record.effective_contract === null || health === null || slot === null || features === null) {
    // decide() never ran for this request (it failed earlier); nothing may have been chosen.
    const chose = record.candidates.length > 0;
    checks.set(
      "decision",
      chose ? "fail" : "skipped",
      recorded,
      chose ? "candidates recorded although decide() was not reached" : "decide() was not reached",
    );
    return;
  }
  if (!policyOk) {
    checks.set("decision", "fail", recorded, "stored policy does not match policy_hash");
    return;
  }
  const policy = policySchema.safeParse(storedPolicy);
  if (!policy.success) {
    checks.set("decision", "fail", recorded, "today's build cannot parse the stored policy");
    return;
  }
  try {
    const hosts = record.decision_inputs.hosts;
    const decision = decide(
      {
        contract: record.effective_contract,
        policy: policy.data,
        health,
        slot,
        features,
        keys,
        ...(hosts === undefined ? {} : { hosts }),
      } as Parameters<typeof decide>[0],
    );
    checks.compare("decision", recorded, {
      candidates: decision.candidates,
      factors: decision.factors,
      constraints: decision.constraints,
    });
  } catch (error) {
    checks.set("decision", "fail", recorded, `decide() threw: ${errorMessage(error)}`);
  }
}

interface OllamaFacts {
  version: string;
  digest: string | null;
  error: string | null;
}

async function getJson(url: string, doFetch: typeof fetch, timeoutMs: number): Promise<unknown> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), Math.min(timeoutMs, 30_000));
  try {
    const response = await doFetch(url, { signal: controller.signal });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`GET ${new URL(url).pathname} answered ${response.status}`);
    }
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

async function probeOllama(
  baseUrl: string,
  model: string,
  doFetch: typeof fetch,
  timeoutMs: number,
): Promise<OllamaFacts> {
  try {
    const version = await getJson(`${baseUrl}/api/version`, doFetch, timeoutMs) as { version?: unknown };
    const tags = await getJson(`${baseUrl}/api/tags`, doFetch, timeoutMs) as { models?: unknown };
    const models = Array.isArray(tags.models)
      ? tags.models as { name?: string; model?: string; digest?: string }[]
      : [];
    const entry = models.find((m) => m.name === model || m.model === model) ??
      models.find((m) =>
        !model.includes(":") && (m.name === `${model}:latest` || m.model === `${model}:latest`)
      );
    const digest = typeof entry?.digest === "string" ? entry.digest.replace(/^sha256:/, "") : null;
    return { version: String(version.version ?? "unknown"), digest, error: null };
  } catch (error) {
    return { version: "", digest: null, error: errorMessage(error) };
  }
}

// Recorded options that do not go to Ollama as recorded: max_tokens (sent as num_predict) and stop (the
// record keeps only hashes; the adapter sends the captured request's strings).
const NATIVE_ONLY_OPTIONS = new Set(["max_tokens", "stop"]);

async function reExecute(
  record: EdrRecord,
  captured: ChatRequest,
  baseUrl: string,
  doFetch: typeof fetch,
  timeoutMs: number,
): Promise<string> {
  const recordedOptions: Record<string, unknown> = { ...record.environment.options };
  if (recordedOptions.max_tokens !== undefined && recordedOptions.num_predict === undefined) {
    recordedOptions.num_predict = recordedOptions.max_tokens;
  }
  for (const key of NATIVE_ONLY_OPTIONS) delete recordedOptions[key];
  if (record.environment.seed !== null) recordedOptions.seed = record.environment.seed;
  // The adapter speaks canonical fields only; the recorded options are Ollama's own names and may
  // include ones a ChatRequest cannot carry (num_ctx, top_k, …), so they are merged into the wire body.
  const patchedFetch: UpstreamFetch = (url, init) => {
    if (init?.body !== undefined && typeof init.body === "string") {
      const body = JSON.parse(init.body) as { options?: Record<string, unknown> };
      body.options = { ...(body.options ?? {}), ...recordedOptions };
      init = { ...init, body: JSON.stringify(body) };
    }
    return doFetch(url, init);
  };
  const adapter = new OllamaAdapter({ baseUrl, fetch: patchedFetch });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const result = await adapter.complete({ ...captured, stream: false }, {
      model: record.decision.model!,
      signal: controller.signal,
      firstByteTimeoutMs: timeoutMs,
      totalTimeoutMs: timeoutMs,
      defaultMaxTokens: 4096,
    });
    return outputHashOf({
      content: result.content,
      tool_calls: result.tool_calls,
      finish_reason: result.finish_reason,
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Lists every `*.json` file under a folder, sorted, for `--all` (symlinks are not followed). */
export async function listEdrFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(dir)) entries.push(entry);
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile && entry.name.endsWith(".json")) out.push(path);
    }
  };
  await walk(root);
  return out;
}
