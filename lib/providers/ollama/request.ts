/**
 * Canonical request → Ollama's `POST /api/chat` body: system messages, bare base64 images, tool-call
 * arguments as objects, `think`, `format` and `options`. What Ollama cannot take is refused with a 400
 * `UpstreamError` (fallback-worthy when a cloud candidate could honour it).
 */
import { type ChatMessage, type ChatRequest, type ContentPart, readArguments } from "../../canonical/mod.ts";
import { unsupportedFieldError } from "../http_errors.ts";
import { UpstreamError } from "../types.ts";
import { type ForcedTool, forcedTool } from "./forced_tool.ts";

/** One message in Ollama's `/api/chat` shape. */
export interface OllamaMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  images?: string[];
  tool_calls?: { function: { name: string; arguments: Record<string, unknown> } }[];
  tool_name?: string;
}

function invalid(message: string, code: string, fallback: boolean): UpstreamError {
  return new UpstreamError(message, { status: 400, code, type: "invalid_request_error", fallback });
}

function imageToBase64(url: string): string {
  if (!url.startsWith("data:")) {
    // Ollama cannot fetch a URL; a cloud candidate can, so this is fallback-worthy.
    throw invalid(
      "the local model cannot take an image by url; send it as a base64 data url or allow a cloud provider",
      "IMAGE_URL_NOT_SUPPORTED_LOCALLY",
      true,
    );
  }
  const comma = url.indexOf(",");
  if (comma === -1) {
    throw invalid(
      "an image data url has no comma; send data:<type>;base64,<data>",
      "INVALID_IMAGE_URL",
      false,
    );
  }
  const meta = url.slice(5, comma);
  const payload = url.slice(comma + 1);
  if (meta.split(";").includes("base64")) return payload;
  // A percent-encoded data URL (e.g. SVG text) must become base64 for Ollama.
  const bytes = new TextEncoder().encode(decodeURIComponent(payload));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function splitContent(content: string | ContentPart[] | null): { text: string; images: string[] } {
  if (content === null) return { text: "", images: [] };
  if (typeof content === "string") return { text: content, images: [] };
  const texts: string[] = [];
  const images: string[] = [];
  for (const part of content) {
    if (part.type === "text") texts.push(part.text);
    else images.push(imageToBase64(part.image_url.url));
  }
  return { text: texts.join("\n"), images };
}

function parseArguments(raw: string): Record<string, unknown> {
  const reading = readArguments(raw);
  if ("object" in reading) return reading.object;
  throw invalid(
    reading.problem === "not_json"
      ? "an assistant tool call has arguments that are not valid JSON; send a JSON object string"
      : "an assistant tool call's arguments must be a JSON object",
    "INVALID_TOOL_ARGUMENTS",
    false,
  );
}

/** Translates canonical messages into Ollama's; throws `UpstreamError` 400 for what Ollama cannot take. */
export function toOllamaMessages(messages: ChatMessage[]): OllamaMessage[] {
  const toolNames = new Map<string, string>();
  const out: OllamaMessage[] = [];
  for (const message of messages) {
    const { text, images } = splitContent(message.content);
    const base: OllamaMessage = {
      role: message.role === "developer" ? "system" : message.role,
      content: text,
    };
    if (images.length > 0) base.images = images;
    if (message.role === "assistant" && message.tool_calls && message.tool_calls.length > 0) {
      base.tool_calls = message.tool_calls.map((call) => {
        toolNames.set(call.id, call.function.name);
        return { function: { name: call.function.name, arguments: parseArguments(call.function.arguments) } };
      });
    }
    if (message.role === "tool") {
      const name = toolNames.get(message.tool_call_id) ?? message.name;
      if (name !== undefined) base.tool_name = name;
    }
    out.push(base);
  }
  return out;
}

// Fallback-worthy: a cloud candidate can honour the field; without one the client gets this 400.
const unsupported = unsupportedFieldError;

/**
 * Throws `UNSUPPORTED_FIELD` (naming the field) for what Ollama cannot honour: a choice among several
 * forced tools (see `forcedTool`), `parallel_tool_calls: false` when the model may call tools freely, and
 * `logprobs`. Returns the one tool the request forces, if any (answered as JSON, one call).
 */
export function checkOllamaSupport(request: ChatRequest): ForcedTool | null {
  const tools = request.tools !== undefined && request.tools.length > 0 && request.tool_choice !== "none";
  const forced = forcedTool(request);
  // A forced tool is called exactly once, which is what parallel_tool_calls: false asks.
  if (tools && forced === null && request.parallel_tool_calls === false) {
    throw unsupported(
      "parallel_tool_calls",
      "the local model cannot be held to one tool call per turn (parallel_tool_calls false); leave it out, or allow a cloud provider",
    );
  }
  if (request.logprobs === true || (request.top_logprobs !== undefined && request.top_logprobs > 0)) {
    throw unsupported(
      request.logprobs === true ? "logprobs" : "top_logprobs",
      "the local model cannot return token logprobs; leave logprobs out, or allow the openai provider",
    );
  }
  return forced;
}

const THINK_LEVELS: Record<string, "low" | "medium" | "high"> = {
  minimal: "low",
  low: "low",
  medium: "medium",
  high: "high",
  xhigh: "high",
};

/**
 * Ollama's `think` for a request, or undefined to leave the model's default: `reasoning_effort` "none"
 * or Anthropic `thinking` disabled → false; any other effort, or thinking enabled/adaptive → true. Only
 * gpt-oss takes levels ("low" | "medium" | "high"); every other thinking model takes a boolean.
 */
export function thinkFor(
  request: ChatRequest,
  model: string,
): boolean | "low" | "medium" | "high" | undefined {
  const effort = request.reasoning_effort;
  if (effort !== undefined) {
    if (effort === "none") return false;
    return model.startsWith("gpt-oss") ? THINK_LEVELS[effort] ?? "medium" : true;
  }
  if (request.thinking !== undefined) return request.thinking.type !== "disabled";
  return undefined;
}

/** Builds the `/api/chat` body for a canonical request. */
export function toOllamaRequest(
  request: ChatRequest,
  options: { model: string; stream: boolean; keepAlive?: string | number; contextWindow?: number },
): Record<string, unknown> {
  const forced = checkOllamaSupport(request);
  const body: Record<string, unknown> = {
    model: options.model,
    messages: toOllamaMessages(request.messages),
  };
  // A forced tool is asked for as JSON in its schema (see ollama_forced_tool.ts): no tools go out.
  if (forced !== null) body.format = forced.schema;
  else if (request.tools && request.tools.length > 0 && request.tool_choice !== "none") {
    body.tools = request.tools;
  }
  const think = thinkFor(request, options.model);
  if (think !== undefined) body.think = think;
  const format = request.response_format;
  if (format?.type === "json_object") body.format = "json";
  else if (format?.type === "json_schema") body.format = format.json_schema.schema ?? "json";
  const opts: Record<string, unknown> = {};
  if (request.temperature !== undefined) opts.temperature = request.temperature;
  if (request.top_p !== undefined) opts.top_p = request.top_p;
  if (request.top_k !== undefined) opts.top_k = request.top_k;
  if (request.seed !== undefined) opts.seed = request.seed;
  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  if (maxTokens !== undefined) opts.num_predict = maxTokens;
  if (request.stop !== undefined) {
    opts.stop = typeof request.stop === "string" ? [request.stop] : request.stop;
  }
  if (request.presence_penalty !== undefined) opts.presence_penalty = request.presence_penalty;
  if (request.frequency_penalty !== undefined) opts.frequency_penalty = request.frequency_penalty;
  // Without num_ctx Ollama runs at its own default context (2k–4k tokens) and silently drops the start of
  // longer prompts; the policy's window is what decide() routed by. One value per model: a num_ctx that
  // changes between requests makes Ollama reload the model.
  if (options.contextWindow !== undefined) opts.num_ctx = options.contextWindow;
  if (Object.keys(opts).length > 0) body.options = opts;
  // Ollama streams unless told otherwise, so the flag is always explicit.
  body.stream = options.stream;
  if (options.keepAlive !== undefined) body.keep_alive = options.keepAlive;
  return body;
}
