/**
 * A fake Anthropic Messages API on 127.0.0.1 that enforces what the real one enforces (key, version
 * header, `max_tokens`, roles, answered `tool_use`, block shapes, tool names, temperature range, no
 * temperature with top_p, no sampling parameters under API version 2026-10-21) and
 * answers deterministically (never echoing the prompt), with failure modes for the router's tests.
 */
import { writeThenStall } from "./fake_state.ts";

/** How the fake answers `POST /v1/messages`. */
export type FakeAnthropicMode =
  | "normal"
  | "rate_limit"
  | "overloaded"
  | "error500"
  | "midstream_error"
  | "cut_stream"
  | "hang"
  /** Answers 200 with its headers, then sends no byte of the body until the client goes away. */
  | "stall_after_headers"
  /** Sends the first events of a stream (half of a JSON body), then nothing until the client goes away. */
  | "stall_between_events"
  /** Answers normally, but calls every offered tool at once (one `tool_use` each) where it would call one. */
  | "parallel_tools"
  /** Answers normally but ends with `stop_reason: "pause_turn"` (a long server-side turn paused). */
  | "pause_turn"
  /** Answers normally but ends with `stop_reason: "refusal"`. */
  | "refusal"
  /** Reports prompt-cache reads and writes in `usage` (and in `message_start` when streaming). */
  | "cache_usage"
  /** Thinks first: a signed `thinking` block (streamed as `thinking_delta`s) before the answer. */
  | "thinking";

/** The thinking text of the `thinking` mode. */
export const FAKE_THINKING = "Je réfléchis… 🤔";
/** Cache counts of the `cache_usage` mode. */
export const FAKE_CACHE_USAGE = { cache_creation_input_tokens: 5, cache_read_input_tokens: 40 };

/** Options for `startFakeAnthropic`. */
export interface FakeAnthropicOptions {
  /** The key `x-api-key` must carry (default `sk-ant-test`). */
  apiKey?: string;
  /** Initial mode (default `normal`); change it later through `fake.mode`. */
  mode?: FakeAnthropicMode;
  /** Models listed by `GET /v1/models`. */
  models?: string[];
  /** `retry-after` seconds sent with 429 and 529 (default 7). */
  retryAfter?: number;
}

/** One request the fake received. */
export interface FakeAnthropicRequest {
  method: string;
  path: string;
  /** Request headers, with `x-api-key` replaced by whether it was right. */
  headers: Record<string, string>;
  /** The parsed JSON body, or the raw text when it was not JSON, or null for none. */
  body: unknown;
  /** The status the fake answered with (0 while a `hang` is pending). */
  status: number;
}

/** A running fake Anthropic server. */
export interface FakeAnthropic {
  /** Base URL without `/v1` (what the SDK and the adapter take). */
  readonly url: string;
  /** Current mode; assign to switch. */
  mode: FakeAnthropicMode;
  /** Every request received, in order. */
  readonly requests: FakeAnthropicRequest[];
  /** How many calls the client abandoned (a `hang` aborted, or a stream cancelled before its end). */
  readonly aborted: number;
  /** Resolves once at least `n` requests have arrived. */
  waitForRequests(n: number): Promise<void>;
  /** Resolves once at least `n` calls were abandoned by the client. */
  waitForAborted(n: number): Promise<void>;
  /** Stops the server. */
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

class BadRequest extends Error {}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const MEDIA_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const TOP_LEVEL = new Set([
  "model",
  "max_tokens",
  "messages",
  "system",
  "temperature",
  "top_p",
  "top_k",
  "stop_sequences",
  "stream",
  "tools",
  "tool_choice",
  "metadata",
  "thinking",
  "service_tier",
  "output_config",
]);
const VERSIONS = new Set(["2023-06-01", "2026-10-21"]);
const SAMPLING = new Set(["temperature", "top_p", "top_k"]);
/** The deterministic answer text; the multi-byte characters make byte-split streams interesting. */
const ANSWER = "Bonjour! Voilà une réponse déterministe ✓ — ça marche 🌍.";
/** Odd write sizes so events split inside lines, inside characters and between data and blank line. */
const CHUNK_SIZES = [7, 1, 13, 2, 29, 5, 61, 3];

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function errorResponse(status: number, type: string, message: string, headers: Record<string, string> = {}) {
  return Response.json({ type: "error", error: { type, message } }, {
    status,
    headers: { "request-id": `req_fake_${status}`, ...headers },
  });
}

function checkBlock(block: unknown, where: string, role: "user" | "assistant" | "tool_result"): void {
  if (!isObject(block) || typeof block.type !== "string") {
    throw new BadRequest(`${where}: Input should be an object with a type`);
  }
  switch (block.type) {
    case "text":
      if (typeof block.text !== "string") throw new BadRequest(`${where}.text: Field required`);
      if (block.text === "") throw new BadRequest(`${where}: text content blocks must be non-empty`);
      return;
    case "image": {
      if (role === "assistant") {
        throw new BadRequest(`${where}: image blocks are not allowed in assistant turns`);
      }
      const source = block.source;
      if (!isObject(source)) throw new BadRequest(`${where}.source: Field required`);
      if (source.type === "base64") {
        if (typeof source.media_type !== "string" || !MEDIA_TYPES.has(source.media_type)) {
          throw new BadRequest(
            `${where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`,
          );
        }
        if (typeof source.data !== "string" || source.data === "" || source.data.startsWith("data:")) {
          throw new BadRequest(`${where}.source.data: must be bare base64`);
        }
        return;
      }
      if (source.type === "url" && typeof source.url === "string" && /^https?:\/\//.test(source.url)) return;
      throw new BadRequest(
        `${where}.source: Input tag '${
          String(source.type)
        }' found using 'type' does not match any of the expected tags: 'base64', 'url'`,
      );
    }
    case "tool_use":
      if (role !== "assistant") {
        throw new BadRequest(`${where}: tool_use blocks are only allowed in assistant turns`);
      }
      if (typeof block.id !== "string" || block.id === "") {
        throw new BadRequest(`${where}.id: Field required`);
      }
      if (typeof block.name !== "string" || !TOOL_NAME.test(block.name)) {
        throw new BadRequest(`${where}.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
      }
      if (!isObject(block.input)) throw new BadRequest(`${where}.input: Input should be a valid dictionary`);
      return;
    case "thinking":
    case "redacted_thinking":
      if (role !== "assistant") {
        throw new BadRequest(`${where}: ${block.type} blocks are only allowed in assistant turns`);
      }
      // The API checks the signature of every thinking block sent back; an unsigned one is invalid.
      if (block.type === "thinking" && (typeof block.signature !== "string" || block.signature === "")) {
        throw new BadRequest(`${where}.signature: Invalid \`signature\` in \`thinking\` block`);
      }
      return;
    case "tool_result":
      if (role !== "user") {
        throw new BadRequest(`${where}: tool_result blocks are only allowed in user turns`);
      }
      if (typeof block.tool_use_id !== "string") throw new BadRequest(`${where}.tool_use_id: Field required`);
      if (block.content !== undefined && typeof block.content !== "string") {
        if (!Array.isArray(block.content)) {
          throw new BadRequest(`${where}.content: Input should be a valid string or list`);
        }
        block.content.forEach((inner, i) => checkBlock(inner, `${where}.content.${i}`, "tool_result"));
      }
      if (block.is_error !== undefined && typeof block.is_error !== "boolean") {
        throw new BadRequest(`${where}.is_error: Input should be a valid boolean`);
      }
      return;
  }
  throw new BadRequest(
    `${where}: Input tag '${block.type}' found using 'type' does not match any of the expected tags`,
  );
}

function blocksOf(content: unknown): Json[] {
  return Array.isArray(content) ? content as Json[] : [{ type: "text", text: content }];
}

/** Validates a Messages body like the real API does; throws `BadRequest` with its style of message. */
function validate(body: unknown, version: string): asserts body is Json {
  if (!isObject(body)) throw new BadRequest("request body must be a JSON object");
  for (const key of Object.keys(body)) {
    // API version 2026-10-21 removed the sampling parameters: any value is a 400.
    const removed = version !== "2023-06-01" && SAMPLING.has(key);
    if (!TOP_LEVEL.has(key) || removed) throw new BadRequest(`${key}: Extra inputs are not permitted`);
  }
  // Current models (Claude 4.5 and later) refuse the two sampling controls together.
  if (body.temperature !== undefined && body.top_p !== undefined) {
    throw new BadRequest(
      "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
    );
  }
  if (typeof body.model !== "string" || body.model === "") throw new BadRequest("model: Field required");
  if (body.max_tokens === undefined) throw new BadRequest("max_tokens: Field required");
  if (!Number.isInteger(body.max_tokens) || (body.max_tokens as number) < 1) {
    throw new BadRequest("max_tokens: Input should be greater than or equal to 1");
  }
  if (
    body.temperature !== undefined &&
    (typeof body.temperature !== "number" || body.temperature < 0 || body.temperature > 1)
  ) {
    throw new BadRequest("temperature: Input should be less than or equal to 1");
  }
  if (body.top_p !== undefined && (typeof body.top_p !== "number" || body.top_p < 0 || body.top_p > 1)) {
    throw new BadRequest("top_p: Input should be between 0 and 1");
  }
  if (
    body.stop_sequences !== undefined &&
    (!Array.isArray(body.stop_sequences) || body.stop_sequences.some((s) => typeof s !== "string"))
  ) {
    throw new BadRequest("stop_sequences: Input should be a valid list of strings");
  }
  if (body.system !== undefined && typeof body.system !== "string") {
    if (!Array.isArray(body.system)) throw new BadRequest("system: Input should be a valid string or list");
    body.system.forEach((block, i) => {
      if (!isObject(block) || block.type !== "text") {
        throw new BadRequest(`system.${i}: Input should be a text block`);
      }
      checkBlock(block, `system.${i}`, "user");
    });
  }
  const toolNames = new Set<string>();
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) throw new BadRequest("tools: Input should be a valid list");
    body.tools.forEach((tool, i) => {
      if (!isObject(tool) || typeof tool.name !== "string" || !TOOL_NAME.test(tool.name)) {
        throw new BadRequest(`tools.${i}.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
      }
      if (!isObject(tool.input_schema) || tool.input_schema.type !== "object") {
        throw new BadRequest(`tools.${i}.input_schema.type: Input should be 'object'`);
      }
      if (tool.description !== undefined && typeof tool.description !== "string") {
        throw new BadRequest(`tools.${i}.description: Input should be a valid string`);
      }
      toolNames.add(tool.name);
    });
  }
  if (body.tool_choice !== undefined) {
    const choice = body.tool_choice;
    if (!isObject(choice) || !["auto", "any", "tool", "none"].includes(String(choice.type))) {
      throw new BadRequest(
        "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'",
      );
    }
    if (choice.type === "tool" && (typeof choice.name !== "string" || !toolNames.has(choice.name))) {
      throw new BadRequest("tool_choice.name: names no tool in tools");
    }
    if (body.tools === undefined && choice.type !== "none") {
      throw new BadRequest("tool_choice: may only be specified while providing tools");
    }
  }
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new BadRequest("messages: at least one message is required");
  }
  let pendingToolUse: string[] = [];
  messages.forEach((message, i) => {
    if (!isObject(message)) throw new BadRequest(`messages.${i}: Input should be an object`);
    if (message.role === "system") {
      throw new BadRequest(
        `messages.${i}.role: Unexpected role "system". The Messages API accepts a top-level \`system\` parameter, not "system" as an input message role.`,
      );
    }
    if (message.role !== "user" && message.role !== "assistant") {
      throw new BadRequest(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    }
    if (i === 0 && message.role !== "user") {
      throw new BadRequest(`messages: first message must use the "user" role`);
    }
    const role = message.role;
    if (typeof message.content === "string") {
      if (message.content === "" && !(i === messages.length - 1 && role === "assistant")) {
        throw new BadRequest(
          `messages.${i}: all messages must have non-empty content except for the optional final assistant message`,
        );
      }
    } else if (Array.isArray(message.content)) {
      if (message.content.length === 0) {
        throw new BadRequest(
          `messages.${i}: all messages must have non-empty content except for the optional final assistant message`,
        );
      }
      message.content.forEach((block, j) => checkBlock(block, `messages.${i}.content.${j}`, role));
    } else throw new BadRequest(`messages.${i}.content: Input should be a valid string or list`);

    const blocks = blocksOf(message.content);
    if (pendingToolUse.length > 0) {
      const leading: string[] = [];
      for (const block of blocks) {
        if (block.type !== "tool_result") break;
        leading.push(String(block.tool_use_id));
      }
      const missing = pendingToolUse.filter((id) => !leading.includes(id));
      if (role !== "user" || missing.length > 0) {
        throw new BadRequest(
          `messages.${i}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${
            missing.join(", ")
          }. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
        );
      }
    }
    const answered = new Set(pendingToolUse);
    blocks.forEach((block, j) => {
      if (block.type === "tool_result" && !answered.has(String(block.tool_use_id))) {
        throw new BadRequest(
          `messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${
            String(block.tool_use_id)
          }. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`,
        );
      }
    });
    pendingToolUse = role === "assistant"
      ? blocks.filter((b) => b.type === "tool_use").map((b) => String(b.id))
      : [];
  });
  if (pendingToolUse.length > 0) {
    throw new BadRequest(
      `messages: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${
        pendingToolUse.join(", ")
      }. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
    );
  }
}

function sampleInput(schema: unknown): Json {
  const input: Json = {};
  const properties = isObject(schema) && isObject(schema.properties) ? schema.properties : {};
  for (const [name, prop] of Object.entries(properties)) {
    const type = isObject(prop) ? prop.type : undefined;
    input[name] = type === "number" || type === "integer" ? 1 : type === "boolean" ? true : "Paris";
  }
  return input;
}

interface Answer {
  message: Json;
  text: string;
  /** The `tool_use` blocks, in order; empty when no tool is called. */
  tools: { id: string; name: string; input: Json }[];
}

/** Whether the system prompt asks for a JSON answer (how the router instructs Claude in JSON mode). */
function asksForJson(system: unknown): boolean {
  const text = typeof system === "string"
    ? system
    : Array.isArray(system)
    ? system.map((b) => isObject(b) ? String(b.text) : "").join("\n")
    : "";
  return /\bJSON\b/.test(text);
}

/** The deterministic answer for a valid body: depends on its shape, never on its words. */
function answer(body: Json, seq: number, mode: FakeAnthropicMode): Answer {
  const messages = body.messages as Json[];
  const last = messages[messages.length - 1];
  const lastBlocks = blocksOf(last.content);
  const results = last.role === "user" ? lastBlocks.filter((b) => b.type === "tool_result").length : 0;
  const tools = (body.tools ?? []) as Json[];
  const choice = body.tool_choice as Json | undefined;
  let called: Answer["tools"] = [];
  let text: string;
  if (tools.length > 0 && choice?.type !== "none" && results === 0) {
    const chosen = choice?.type === "tool"
      ? [tools.find((t) => t.name === choice.name)!]
      : tools.slice(0, mode === "parallel_tools" ? tools.length : 1);
    called = chosen.map((t, i) => ({
      id: `toolu_fake${seq.toString().padStart(4, "0")}${i === 0 ? "" : `_${i}`}`,
      name: String(t.name),
      input: sampleInput(t.input_schema),
    }));
    text = "Je vérifie ✓";
  } else if (asksForJson(body.system) || body.output_config !== undefined) {
    text = `{"answer": "fake${seq.toString().padStart(4, "0")}", "note": "ça marche 🌍"}`;
  } else if (results > 0) {
    text = `Résultat reçu ✓ (${results} tool result${results === 1 ? "" : "s"}, ${messages.length} turns)`;
  } else {
    text = `${ANSWER} (${messages.length} turn${messages.length === 1 ? "" : "s"}${
      body.system === undefined ? "" : ", with system"
    })`;
  }
  let stopReason = called.length > 0 ? "tool_use" : "end_turn";
  let stopSequence: string | null = null;
  for (const stop of (body.stop_sequences ?? []) as string[]) {
    const at = stop === "" ? -1 : text.indexOf(stop);
    if (at >= 0 && called.length === 0) {
      text = text.slice(0, at);
      stopReason = "stop_sequence";
      stopSequence = stop;
      break;
    }
  }
  // One "token" per word keeps max_tokens truncation predictable.
  const words = text.split(" ");
  const maxTokens = body.max_tokens as number;
  if (words.length > maxTokens) {
    text = words.slice(0, maxTokens).join(" ");
    stopReason = "max_tokens";
    stopSequence = null;
    called = [];
  }
  if (stopReason === "end_turn" && (mode === "pause_turn" || mode === "refusal")) stopReason = mode;
  const content: Json[] = [];
  if (mode === "thinking") content.push({ type: "thinking", thinking: FAKE_THINKING, signature: "sig-fake" });
  if (text !== "") content.push({ type: "text", text });
  for (const tool of called) content.push({ type: "tool_use", ...tool });
  const inputTokens = Math.ceil(JSON.stringify(body.messages).length / 4) +
    (typeof body.system === "string" ? Math.ceil(body.system.length / 4) : 0);
  const outputTokens = Math.min(maxTokens, text.split(" ").length) + 10 * called.length;
  return {
    text,
    tools: called,
    message: {
      id: `msg_fake${seq.toString().padStart(4, "0")}`,
      type: "message",
      role: "assistant",
      model: body.model,
      content,
      stop_reason: stopReason,
      stop_sequence: stopSequence,
      usage: {
        input_tokens: inputTokens,
        output_tokens: outputTokens,
        ...(mode === "cache_usage" ? FAKE_CACHE_USAGE : {}),
      },
    },
  };
}

function sse(type: string, data: Json): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

function pieces(text: string, size: number): string[] {
  const chars = [...text];
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(""));
  return out;
}

/** The SSE text of a whole streamed answer, cut short for the failure modes. */
function streamText(result: Answer, mode: FakeAnthropicMode): string {
  const message = result.message;
  const usage = message.usage as Json;
  let out = sse("message_start", {
    message: {
      ...message,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: 1 },
    },
  });
  out += sse("ping", {});
  let index = 0;
  if (mode === "thinking") {
    out += sse("content_block_start", {
      index,
      content_block: { type: "thinking", thinking: "", signature: "" },
    });
    for (const piece of pieces(FAKE_THINKING, 4)) {
      out += sse("content_block_delta", { index, delta: { type: "thinking_delta", thinking: piece } });
    }
    out += sse("content_block_delta", { index, delta: { type: "signature_delta", signature: "sig-fake" } });
    out += sse("content_block_stop", { index });
    index++;
  }
  if (result.text !== "") {
    out += sse("content_block_start", { index, content_block: { type: "text", text: "" } });
    pieces(result.text, 6).forEach((piece, i) => {
      out += sse("content_block_delta", { index, delta: { type: "text_delta", text: piece } });
      if (i === 1) out += sse("ping", {});
    });
    if (mode === "midstream_error") {
      return out + sse("error", { error: { type: "overloaded_error", message: "Overloaded" } });
    }
    if (mode === "cut_stream") return out;
    out += sse("content_block_stop", { index });
    index++;
  }
  for (const tool of result.tools) {
    out += sse("content_block_start", {
      index,
      content_block: { type: "tool_use", id: tool.id, name: tool.name, input: {} },
    });
    const json = JSON.stringify(tool.input);
    // The first fragment is empty, as the real API often sends it.
    for (const fragment of ["", ...pieces(json, 5)]) {
      out += sse("content_block_delta", {
        index,
        delta: { type: "input_json_delta", partial_json: fragment },
      });
    }
    out += sse("ping", {});
    out += sse("content_block_stop", { index });
    index++;
  }
  out += sse("message_delta", {
    delta: { stop_reason: message.stop_reason, stop_sequence: message.stop_sequence },
    usage: { output_tokens: usage.output_tokens },
  });
  out += sse("message_stop", {});
  return out;
}

/** A body that writes `bytes` in odd-sized pieces, one per pull, and notices a client that leaves early. */
function chunkedBody(bytes: Uint8Array, onCancel: () => void): ReadableStream<Uint8Array> {
  let offset = 0;
  let n = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      const size = CHUNK_SIZES[n++ % CHUNK_SIZES.length];
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
    cancel() {
      onCancel();
    },
  }, { highWaterMark: 0 });
}

/** Starts the fake on an ephemeral 127.0.0.1 port. */
export function startFakeAnthropic(options: FakeAnthropicOptions = {}): FakeAnthropic {
  const apiKey = options.apiKey ?? "sk-ant-test";
  const retryAfter = String(options.retryAfter ?? 7);
  const models = options.models ?? ["claude-fake-1", "claude-fake-2"];
  const requests: FakeAnthropicRequest[] = [];
  let aborted = 0;
  let seq = 0;
  const requestWaiters: { n: number; resolve: () => void }[] = [];
  const abortWaiters: { n: number; resolve: () => void }[] = [];
  const wake = () => {
    for (const list of [[requestWaiters, requests.length], [abortWaiters, aborted]] as const) {
      const [waiters, count] = list;
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (count >= waiters[i].n) waiters.splice(i, 1)[0].resolve();
      }
    }
  };
  const noteAbort = () => {
    aborted++;
    wake();
  };
  const state = { mode: options.mode ?? "normal" as FakeAnthropicMode };
  const closing = new AbortController();

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const text = req.method === "POST" ? await req.text() : "";
    let body: unknown = null;
    if (text !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    const headers: Record<string, string> = {};
    req.headers.forEach((value, key) => {
      headers[key] = key === "x-api-key" ? (value === apiKey ? "<correct>" : "<wrong>") : value;
    });
    const record: FakeAnthropicRequest = { method: req.method, path: url.pathname, headers, body, status: 0 };
    requests.push(record);
    wake();
    const respond = (response: Response) => {
      record.status = response.status;
      return response;
    };

    // The API takes x-api-key, or (SDK majors from 2026-10-21 on) `Authorization: Bearer`; x-api-key wins.
    const bearer = /^Bearer (.+)$/i.exec(req.headers.get("authorization") ?? "")?.[1] ?? null;
    const key = req.headers.get("x-api-key") ?? bearer;
    if (key === null || key !== apiKey) {
      return respond(
        errorResponse(
          401,
          "authentication_error",
          key === null ? "x-api-key header is required" : "invalid x-api-key",
        ),
      );
    }
    const version = req.headers.get("anthropic-version");
    if (version === null) {
      return respond(errorResponse(400, "invalid_request_error", "anthropic-version: header is required"));
    }
    if (!VERSIONS.has(version)) {
      return respond(
        errorResponse(400, "invalid_request_error", `anthropic-version: unknown version ${version}`),
      );
    }
    if (req.method === "GET" && url.pathname === "/v1/models") {
      const data = models.map((id) => ({
        type: "model",
        id,
        display_name: id,
        created_at: "2025-01-01T00:00:00Z",
      }));
      return respond(
        Response.json({ data, has_more: false, first_id: models[0] ?? null, last_id: models.at(-1) ?? null }),
      );
    }
    if (req.method !== "POST" || url.pathname !== "/v1/messages") {
      return respond(errorResponse(404, "not_found_error", `${req.method} ${url.pathname} not found`));
    }
    if (typeof body === "string" || body === null) {
      return respond(errorResponse(400, "invalid_request_error", "request body is not valid JSON"));
    }
    try {
      validate(body, version);
    } catch (error) {
      if (error instanceof BadRequest) {
        return respond(errorResponse(400, "invalid_request_error", error.message));
      }
      throw error;
    }

    const mode = state.mode;
    if (mode === "rate_limit") {
      return respond(
        errorResponse(
          429,
          "rate_limit_error",
          "Number of request tokens has exceeded your per-minute rate limit",
          { "retry-after": retryAfter },
        ),
      );
    }
    if (mode === "overloaded") {
      return respond(errorResponse(529, "overloaded_error", "Overloaded", { "retry-after": retryAfter }));
    }
    if (mode === "error500") return respond(errorResponse(500, "api_error", "Internal server error"));
    if (mode === "hang") {
      await new Promise<void>((resolve) => {
        if (req.signal.aborted) resolve();
        else req.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      noteAbort();
      return respond(new Response(null, { status: 499 }));
    }

    const result = answer(body, ++seq, mode);
    const common = { "request-id": `req_fake${seq.toString().padStart(4, "0")}` };
    if (mode === "stall_after_headers" || mode === "stall_between_events") {
      const encoder = new TextEncoder();
      const stream = body.stream === true;
      const sent = mode === "stall_after_headers"
        ? []
        : stream
        ? streamText(result, "normal").split("\n\n").slice(0, 2).map((e) => encoder.encode(`${e}\n\n`))
        : [encoder.encode(JSON.stringify(result.message).slice(0, 40))];
      const type = stream ? "text/event-stream; charset=utf-8" : "application/json";
      const stalled = writeThenStall(sent, (outcome) => {
        if (outcome === "aborted") noteAbort();
      }, closing.signal);
      return respond(new Response(stalled, { headers: { ...common, "content-type": type } }));
    }
    if (body.stream === true) {
      let finished = false;
      const bytes = new TextEncoder().encode(streamText(result, mode));
      const stream = chunkedBody(bytes, () => {
        if (!finished) noteAbort();
      });
      // A cut or mid-stream error is the fake's own ending, not the client's abandonment.
      if (mode === "cut_stream" || mode === "midstream_error") finished = true;
      const tracked = stream.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          flush() {
            finished = true;
          },
        }),
      );
      return respond(
        new Response(tracked, {
          headers: {
            ...common,
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
          },
        }),
      );
    }
    if (mode === "cut_stream") {
      // Half a JSON body, then the connection ends: the non-streamed form of a cut.
      const half = new TextEncoder().encode(JSON.stringify(result.message).slice(0, 40));
      return respond(
        new Response(chunkedBody(half, () => {}), {
          headers: { ...common, "content-type": "application/json" },
        }),
      );
    }
    return respond(Response.json(result.message, { headers: common }));
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handle);
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    url,
    get mode() {
      return state.mode;
    },
    set mode(value: FakeAnthropicMode) {
      state.mode = value;
    },
    requests,
    get aborted() {
      return aborted;
    },
    waitForRequests(n: number) {
      return new Promise<void>((resolve) => {
        requestWaiters.push({ n, resolve });
        wake();
      });
    },
    waitForAborted(n: number) {
      return new Promise<void>((resolve) => {
        abortWaiters.push({ n, resolve });
        wake();
      });
    },
    async close() {
      closing.abort();
      await server.shutdown();
    },
  };
}
