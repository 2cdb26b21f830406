/**
 * A fake Ollama host on 127.0.0.1 that follows protocols.md §1 and §5 to the field, including the
 * unfriendly parts: `stream` defaults to true, unknown models are 404, images must be bare base64,
 * NDJSON arrives torn across writes, and failure modes (busy, 500, hang, cut stream, mid-stream error).
 */
import { createHash } from "node:crypto";
import {
  answerHash,
  countTokens,
  type FakeMode,
  FakeState,
  sampleArguments,
  tear,
  waitUnlessGone,
  words,
  writeSlowly,
  writeThenStall,
} from "./fake_state.ts";

export type { FakeHold, FakeMode } from "./fake_state.ts";

/** One installed model as `/api/tags` lists it. */
export interface FakeOllamaModel {
  name: string;
  parameter_size: string;
  family: string;
  size: number;
  digest: string;
  capabilities: string[];
}

/** Options for `startFakeOllama`. */
export interface FakeOllamaOptions {
  /** Installed models; defaults to qwen3:8b, qwen3:32b and llama3.2:1b. */
  models?: FakeOllamaModel[];
  /** What `/api/version` reports. */
  version?: string;
  /** Starting mode. */
  mode?: FakeMode;
}

/** A running fake Ollama. */
export interface FakeOllama extends FakeState {
  /** Base URL, `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The port, kept across `stop()`/`restart()`. */
  readonly port: number;
  /** Installed models (mutable). */
  models: FakeOllamaModel[];
  /** Models that answered a chat call (what `/api/ps` lists). */
  readonly loaded: Set<string>;
  /** Stops listening (connection refused) until `restart()`. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): void;
  /** Ends the fake: aborts held and hanging requests and closes the listener. */
  close(): Promise<void>;
}

function digestOf(name: string): string {
  return createHash("sha256").update(`fake-ollama:${name}`).digest("hex");
}

function model(name: string, parameterSize: string, size: number, capabilities: string[]): FakeOllamaModel {
  return {
    name,
    parameter_size: parameterSize,
    family: name.split(":")[0].replace(/[0-9.]+$/, "") || name,
    size,
    digest: digestOf(name),
    capabilities,
  };
}

/** The default installed models. */
export function defaultOllamaModels(): FakeOllamaModel[] {
  return [
    model("qwen3:8b", "8.2B", 5225387923, ["completion", "tools", "thinking"]),
    model("qwen3:32b", "32.8B", 20201253588, ["completion", "tools", "thinking"]),
    model("llama3.2:1b", "1.2B", 1321098329, ["completion", "tools"]),
  ];
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function ollamaError(message: string, status: number, headers: Record<string, string> = {}): Response {
  return json({ error: message }, status, headers);
}

function entry(m: FakeOllamaModel) {
  return {
    name: m.name,
    model: m.name,
    modified_at: "2025-11-01T10:00:00.000000000Z",
    size: m.size,
    digest: m.digest,
    details: {
      parent_model: "",
      format: "gguf",
      family: m.family,
      families: [m.family],
      parameter_size: m.parameter_size,
      quantization_level: "Q4_K_M",
    },
  };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

interface ChatBody {
  model?: unknown;
  messages?: unknown;
  stream?: unknown;
  tools?: unknown;
  format?: unknown;
  options?: Record<string, unknown>;
  think?: unknown;
}

/** Ollama's context when a request sends no `options.num_ctx`; a longer prompt loses its start. */
export const OLLAMA_DEFAULT_NUM_CTX = 4096;

/** Checks a chat body the way Ollama's Go decoder and handler do; returns an error response or null. */
function validate(body: ChatBody, models: FakeOllamaModel[]): Response | null {
  if (typeof body.model !== "string" || body.model === "") return ollamaError("model is required", 400);
  if (body.messages !== undefined && !Array.isArray(body.messages)) {
    return ollamaError(
      "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message",
      400,
    );
  }
  for (const raw of (body.messages ?? []) as unknown[]) {
    const m = raw as Record<string, unknown>;
    if (m === null || typeof m !== "object") {
      return ollamaError("json: cannot unmarshal value into Go value of type api.Message", 400);
    }
    if (m.content !== undefined && typeof m.content !== "string") {
      return ollamaError(
        `json: cannot unmarshal ${
          Array.isArray(m.content) ? "array" : typeof m.content
        } into Go struct field Message.messages.content of type string`,
        400,
      );
    }
    if (m.images !== undefined) {
      if (!Array.isArray(m.images)) {
        return ollamaError("json: cannot unmarshal images: expected an array", 400);
      }
      for (const image of m.images) {
        if (typeof image !== "string" || !BASE64.test(image) || image.length % 4 !== 0) {
          return ollamaError("illegal base64 data at input byte 4", 400);
        }
      }
    }
    if (m.tool_calls !== undefined) {
      for (const call of m.tool_calls as { function?: { arguments?: unknown } }[]) {
        const args = call?.function?.arguments;
        if (args === null || typeof args !== "object" || Array.isArray(args)) {
          return ollamaError(
            "json: cannot unmarshal string into Go struct field ToolCallFunction.messages.tool_calls.function.arguments of type map[string]interface {}",
            400,
          );
        }
      }
    }
  }
  if (
    body.format !== undefined && body.format !== "json" && body.format !== "" &&
    (body.format === null || typeof body.format !== "object")
  ) {
    return ollamaError(`invalid format: ${JSON.stringify(body.format)}`, 400);
  }
  if (!models.some((m) => m.name === body.model)) {
    return ollamaError(`model "${body.model}" not found, try pulling it first`, 404);
  }
  return null;
}

interface Answer {
  content: string[];
  toolCalls: { function: { name: string; arguments: Record<string, unknown> } }[];
  doneReason: "stop" | "length";
  promptTokens: number;
  /** `message.thinking` pieces, sent only when the request asked to think (`think` true or a level). */
  thinking: string[];
}

/** What the fake thinks aloud when asked to (`think`), in pieces. */
export const FAKE_THINKING = "The user wants an answer; I will give it briefly.";

function answer(body: ChatBody, mode: FakeMode): Answer {
  const messages = (body.messages ?? []) as { role?: string; content?: string }[];
  // Ollama keeps only the last num_ctx tokens of a prompt: the count it reports is what it read.
  const numCtx = typeof body.options?.num_ctx === "number" ? body.options.num_ctx : OLLAMA_DEFAULT_NUM_CTX;
  const promptTokens = Math.min(numCtx, countTokens(messages.map((m) => m.content ?? "").join("\n")));
  const thinking = body.think !== undefined && body.think !== false && body.think !== null
    ? words(FAKE_THINKING)
    : [];
  const tools = Array.isArray(body.tools)
    ? body.tools as { function?: { name?: string; parameters?: unknown } }[]
    : [];
  if (tools.length > 0 && messages.at(-1)?.role === "user") {
    const called = mode === "parallel_tools" ? tools : tools.slice(0, 1);
    return {
      content: [],
      toolCalls: called.map((t) => ({
        function: { name: t?.function?.name ?? "tool", arguments: sampleArguments(t?.function?.parameters) },
      })),
      doneReason: "stop",
      promptTokens,
      thinking,
    };
  }
  // A prompt cut to the context reads differently, so it answers differently (as a real model would).
  const cut = promptTokens < countTokens(messages.map((m) => m.content ?? "").join("\n"));
  const hex = answerHash({
    model: body.model,
    messages,
    seed: body.options?.seed ?? null,
    ...(cut ? { num_ctx: numCtx } : {}),
  }).slice(0, 8);
  const text = body.format !== undefined && body.format !== ""
    ? `{"answer": "${hex}", "note": "café"}`
    : `The local model answers ${hex} from the café.`;
  let pieces = words(text);
  const limit = body.options?.num_predict;
  let doneReason: "stop" | "length" = "stop";
  if (typeof limit === "number" && limit >= 0 && limit < 5) {
    pieces = pieces.slice(0, Math.max(1, limit));
    doneReason = "length";
  }
  return { content: pieces, toolCalls: [], doneReason, promptTokens, thinking };
}

function timings(a: Answer) {
  const evalCount = Math.max(1, a.thinking.length + a.content.length + a.toolCalls.length);
  return {
    total_duration: 512000000,
    load_duration: 1000000,
    prompt_eval_count: a.promptTokens,
    prompt_eval_duration: 20000000,
    eval_count: evalCount,
    eval_duration: 400000000,
  };
}

/** Starts a fake Ollama on 127.0.0.1 with an ephemeral port. */
export function startFakeOllama(options: FakeOllamaOptions = {}): FakeOllama {
  const state = new FakeState<FakeMode>(options.mode ?? "normal");
  const version = options.version ?? "0.12.6";
  const loaded = new Set<string>();
  let models = options.models ?? defaultOllamaModels();
  let closing = new AbortController();
  let server: Deno.HttpServer<Deno.NetAddr> | null = null;
  let port = 0;

  async function chat(req: Request): Promise<Response> {
    const text = await req.text();
    let body: ChatBody;
    try {
      body = JSON.parse(text);
    } catch {
      return ollamaError("invalid character 'x' looking for beginning of value", 400);
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return ollamaError("json: cannot unmarshal value into Go value of type api.ChatRequest", 400);
    }
    state.record(body, req.headers);
    if (state.mode === "auth_fail") return ollamaError("unauthorized", 401);
    const invalid = validate(body, models);
    if (invalid) return invalid;
    const thinks = body.think !== undefined && body.think !== false && body.think !== null;
    if (thinks && !models.find((m) => m.name === body.model)?.capabilities.includes("thinking")) {
      return ollamaError(`"${body.model}" does not support thinking`, 400);
    }
    if (state.mode === "busy") {
      return ollamaError("server busy, please try again.  maximum pending requests exceeded", 503);
    }
    if (state.mode === "error500") {
      return ollamaError("llama runner process has terminated: signal: killed", 500);
    }
    if (state.mode === "rate_limit") return ollamaError("too many requests", 429, { "retry-after": "7" });
    const name = body.model as string;
    const end = state.enter(name);
    let outcome: "ok" | "aborted" | "closing" = "ok";
    const gate = state.gate;
    if (gate) outcome = await waitUnlessGone(req, closing.signal, gate);
    if (outcome === "ok" && state.mode === "hang") outcome = await waitUnlessGone(req, closing.signal, null);
    if (outcome !== "ok") {
      end(outcome === "aborted" ? "aborted" : "done");
      return ollamaError("server shutting down", 503);
    }
    loaded.add(name);
    const a = answer(body, state.mode);
    const createdAt = new Date().toISOString();
    const mode = state.mode;
    if (body.stream === false) {
      if (mode === "midstream_error") {
        end("done");
        return ollamaError("llama runner process has terminated: exit status 2", 500);
      }
      const whole = JSON.stringify({
        model: name,
        created_at: createdAt,
        message: {
          role: "assistant",
          content: a.content.join(""),
          ...(a.thinking.length > 0 ? { thinking: a.thinking.join("") } : {}),
          ...(a.toolCalls.length > 0 ? { tool_calls: a.toolCalls } : {}),
        },
        done: true,
        done_reason: a.doneReason,
        ...timings(a),
      });
      const bytes = new TextEncoder().encode(whole);
      const headers = { "content-type": "application/json; charset=utf-8" };
      if (mode === "stall_after_headers" || mode === "stall_between_events") {
        const sent = mode === "stall_after_headers" ? [] : [bytes.slice(0, Math.floor(bytes.length / 2))];
        return new Response(writeThenStall(sent, end, closing.signal), { headers });
      }
      const pieces = mode === "cut_stream" ? tear(bytes.slice(0, Math.floor(bytes.length / 2))) : tear(bytes);
      return new Response(writeSlowly(pieces, end), { headers });
    }
    const lines: string[] = [];
    for (const piece of a.thinking) {
      lines.push(JSON.stringify({
        model: name,
        created_at: createdAt,
        message: { role: "assistant", content: "", thinking: piece },
        done: false,
      }));
    }
    for (const piece of a.content) {
      lines.push(
        JSON.stringify({
          model: name,
          created_at: createdAt,
          message: { role: "assistant", content: piece },
          done: false,
        }),
      );
    }
    if (a.toolCalls.length > 0) {
      lines.push(JSON.stringify({
        model: name,
        created_at: createdAt,
        message: { role: "assistant", content: "", tool_calls: a.toolCalls },
        done: false,
      }));
    }
    if (mode === "cut_stream" || mode === "midstream_error") {
      lines.splice(2);
      if (mode === "midstream_error") {
        lines.push(
          JSON.stringify({ error: "an error was encountered while running the model: unexpected EOF" }),
        );
      }
    } else {
      lines.push(JSON.stringify({
        model: name,
        created_at: createdAt,
        message: { role: "assistant", content: "" },
        done: true,
        done_reason: a.doneReason,
        ...timings(a),
      }));
    }
    const encoder = new TextEncoder();
    const stall = mode === "stall_after_headers" ? 0 : mode === "stall_between_events" ? 2 : -1;
    const ndjson = stall === -1
      ? writeSlowly(tear(encoder.encode(lines.map((l) => l + "\n").join(""))), end)
      : writeThenStall(lines.slice(0, stall).map((l) => encoder.encode(l + "\n")), end, closing.signal);
    return new Response(ndjson, {
      headers: { "content-type": "application/x-ndjson" },
    });
  }

  async function handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && path === "/") return new Response("Ollama is running");
    if (req.method === "GET" && path === "/api/version") return json({ version });
    if (req.method === "GET" && path === "/api/tags") return json({ models: models.map(entry) });
    if (req.method === "GET" && path === "/api/ps") {
      const expires = new Date(Date.now() + 5 * 60_000).toISOString();
      return json({
        models: models.filter((m) => loaded.has(m.name)).map((m) => ({
          ...entry(m),
          expires_at: expires,
          size_vram: m.size,
        })),
      });
    }
    if (req.method === "POST" && path === "/api/show") {
      let body: { model?: string; name?: string };
      try {
        body = await req.json();
      } catch {
        return ollamaError("invalid character 'x' looking for beginning of value", 400);
      }
      const wanted = body?.model ?? body?.name;
      const m = models.find((x) => x.name === wanted);
      if (!m) return ollamaError(`model '${wanted}' not found`, 404);
      return json({
        modelfile: `FROM ${m.name}`,
        parameters: "temperature 0.6",
        template: "{{ .Prompt }}",
        details: entry(m).details,
        model_info: {
          "general.architecture": m.family,
          "general.parameter_count": Number.parseFloat(m.parameter_size) * 1e9,
        },
        capabilities: m.capabilities,
        modified_at: "2025-11-01T10:00:00.000000000Z",
      });
    }
    if (req.method === "POST" && path === "/api/chat") return await chat(req);
    await req.body?.cancel();
    return new Response("404 page not found", { status: 404, headers: { "content-type": "text/plain" } });
  }

  function listen(): void {
    closing = new AbortController();
    server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, handle);
    port = server.addr.port;
  }

  async function shutdown(): Promise<void> {
    if (server === null) return;
    const s = server;
    server = null;
    closing.abort();
    await s.shutdown();
  }

  listen();
  const fake = Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    port,
    loaded,
    stop: shutdown,
    restart: () => {
      if (server === null) listen();
    },
    close: shutdown,
  }) as FakeState<FakeMode> & Omit<FakeOllama, keyof FakeState | "models">;
  Object.defineProperty(fake, "models", {
    get: () => models,
    set: (value: FakeOllamaModel[]) => {
      models = value;
    },
    enumerable: true,
  });
  return fake as FakeOllama;
}
