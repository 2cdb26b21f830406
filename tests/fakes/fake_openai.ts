/**
 * A fake OpenAI chat-completions API on 127.0.0.1 that follows protocols.md §2 and §5 to the field:
 * bearer-key auth, OpenAI-shaped error bodies, SSE events torn at arbitrary byte offsets (inside
 * multi-byte characters too), the usage chunk only when asked, tool calls streamed as fragments, and
 * failure modes (429 with retry-after, 500, 503, insufficient quota, hang, cut stream, mid-stream error).
 */
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

export type { FakeHold } from "./fake_state.ts";

/**
 * The fake OpenAI's modes: the shared ones plus `quota` (429 `insufficient_quota`), `refusal` (the model
 * refuses: `message.refusal` / `delta.refusal`, content null) and `usage_details` (usage carries
 * `prompt_tokens_details.cached_tokens` and `completion_tokens_details.reasoning_tokens`).
 */
export type FakeOpenAIMode = FakeMode | "quota" | "refusal" | "usage_details";

/** The refusal text of `refusal` mode. */
export const FAKE_REFUSAL = "I'm sorry, I can't help with that request.";
/** `cached_tokens` and `reasoning_tokens` of `usage_details` mode. */
export const FAKE_USAGE_DETAILS = { cached_tokens: 3, reasoning_tokens: 2 } as const;
/** The logprob the fake gives every token when the request sets `logprobs: true`. */
export const FAKE_LOGPROB = -0.25;

/** Options for `startFakeOpenAI`. */
export interface FakeOpenAIOptions {
  /** The bearer key it accepts; default `sk-test-openai`. */
  apiKey?: string;
  /** Known models; default gpt-4o-mini, gpt-4o, gpt-4.1-mini. */
  models?: string[];
  /** Seconds sent in `retry-after` in `rate_limit` mode; default 7. */
  retryAfterSeconds?: number;
  /** Starting mode. */
  mode?: FakeOpenAIMode;
}

/** A running fake OpenAI. */
export interface FakeOpenAI extends FakeState<FakeOpenAIMode> {
  /** Base URL including `/v1`, as the SDK's `baseURL` wants it. */
  readonly url: string;
  /** The accepted key. */
  readonly apiKey: string;
  /** Ends the fake: aborts held and hanging requests and closes the listener. */
  close(): Promise<void>;
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json",
      "x-request-id": `req_${crypto.randomUUID().replaceAll("-", "")}`,
      ...headers,
    },
  });
}

function openaiError(
  status: number,
  error: { message: string; type: string; param?: string | null; code?: string | null },
  headers: Record<string, string> = {},
): Response {
  return json(
    {
      error: {
        message: error.message,
        type: error.type,
        param: error.param ?? null,
        code: error.code ?? null,
      },
    },
    status,
    headers,
  );
}

function mask(key: string): string {
  return key.length > 8 ? `${key.slice(0, 3)}*****${key.slice(-4)}` : "*****";
}

interface ChatBody {
  model?: unknown;
  messages?: unknown;
  stream?: unknown;
  stream_options?: { include_usage?: boolean } | null;
  tools?: { function?: { name?: string; parameters?: unknown } }[];
  tool_choice?: unknown;
  seed?: unknown;
  max_tokens?: unknown;
  max_completion_tokens?: unknown;
  n?: unknown;
  response_format?: { type?: string } | null;
  logprobs?: unknown;
}

interface Answer {
  pieces: string[];
  /** The tool calls, in order; empty for a text answer. */
  tools: { id: string; name: string; fragments: string[] }[];
  finish: "stop" | "length" | "tool_calls";
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

function answer(body: ChatBody, mode: FakeOpenAIMode): Answer {
  const messages = body.messages as { role?: string; content?: unknown }[];
  const prompt = countTokens(
    messages.map((m) => typeof m.content === "string" ? m.content : JSON.stringify(m.content ?? "")).join(
      "\n",
    ),
  );
  const hex = answerHash({ model: body.model, messages, seed: body.seed ?? null });
  const tools = Array.isArray(body.tools) ? body.tools : [];
  if (tools.length > 0 && body.tool_choice !== "none" && messages.at(-1)?.role === "user") {
    const choice = body.tool_choice as { function?: { name?: string } } | undefined;
    const called = choice?.function?.name
      ? [
        tools.find((t) => t?.function?.name === choice.function?.name) ??
          { function: { name: choice.function.name } },
      ]
      : tools.slice(0, mode === "parallel_tools" ? tools.length : 1);
    const completion = 9 * called.length;
    return {
      pieces: [],
      tools: called.map((t, i) => ({
        id: `call_${hex.slice(0, 22)}${i.toString().padStart(2, "0")}`,
        name: t?.function?.name ?? "tool",
        fragments: fragmentsOf(sampleArguments(t?.function?.parameters)),
      })),
      finish: "tool_calls",
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
    };
  }
  const format = body.response_format?.type;
  let pieces = format === "json_object" || format === "json_schema"
    ? words(`{"answer": "${hex.slice(0, 8)}", "note": "café 🙂"}`)
    : words(`Bonjour 🙂 voilà la réponse ${hex.slice(0, 8)}, très bien.`);
  const limit = body.max_completion_tokens ?? body.max_tokens;
  let finish: Answer["finish"] = "stop";
  if (typeof limit === "number" && limit < 5) {
    pieces = pieces.slice(0, Math.max(1, limit));
    finish = "length";
  }
  return {
    pieces,
    tools: [],
    finish,
    usage: { prompt_tokens: prompt, completion_tokens: pieces.length, total_tokens: prompt + pieces.length },
  };
}

/** Tool-call arguments as the streamed fragments a real answer arrives in. */
function fragmentsOf(args: Record<string, unknown>): string[] {
  const json = JSON.stringify(args);
  if (json === '{"city":"Paris"}') return ['{"ci', 'ty": "Par', "is", '"}'];
  const out: string[] = [];
  for (let i = 0; i < json.length; i += 7) out.push(json.slice(i, i + 7));
  return out;
}

/** Starts a fake OpenAI on 127.0.0.1 with an ephemeral port. */
export function startFakeOpenAI(options: FakeOpenAIOptions = {}): FakeOpenAI {
  const state = new FakeState<FakeOpenAIMode>(options.mode ?? "normal");
  const apiKey = options.apiKey ?? "sk-test-openai";
  const models = options.models ?? ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"];
  const retryAfter = options.retryAfterSeconds ?? 7;
  const closing = new AbortController();

  function authorize(req: Request): Response | null {
    const header = req.headers.get("authorization");
    if (header === null) {
      return openaiError(401, {
        message:
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        type: "invalid_request_error",
        code: "invalid_api_key",
      });
    }
    const given = header.replace(/^Bearer\s+/i, "");
    if (given !== apiKey || state.mode === "auth_fail") {
      return openaiError(401, {
        message: `Incorrect API key provided: ${
          mask(given)
        }. You can find your API key at https://platform.openai.com/account/api-keys.`,
        type: "invalid_request_error",
        code: "invalid_api_key",
      });
    }
    return null;
  }

  async function chat(req: Request): Promise<Response> {
    const text = await req.text();
    const denied = authorize(req);
    if (denied) return denied;
    let body: ChatBody;
    try {
      body = JSON.parse(text);
      if (body === null || typeof body !== "object" || Array.isArray(body)) {
        throw new SyntaxError("not an object");
      }
    } catch {
      return openaiError(400, {
        message:
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        type: "invalid_request_error",
      });
    }
    state.record(body);
    if (typeof body.model !== "string" || body.model === "") {
      return openaiError(400, {
        message: "you must provide a model parameter",
        type: "invalid_request_error",
      });
    }
    if (!Array.isArray(body.messages)) {
      return openaiError(400, {
        message: "Missing required parameter: 'messages'.",
        type: "invalid_request_error",
        param: "messages",
        code: "missing_required_parameter",
      });
    }
    if (body.messages.length === 0) {
      return openaiError(400, {
        message:
          "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        type: "invalid_request_error",
        param: "messages",
        code: "empty_array",
      });
    }
    if (body.stream_options != null && body.stream !== true) {
      return openaiError(400, {
        message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        type: "invalid_request_error",
        param: "stream_options",
      });
    }
    if (!models.includes(body.model)) {
      return openaiError(404, {
        message: `The model \`${body.model}\` does not exist or you do not have access to it.`,
        type: "invalid_request_error",
        code: "model_not_found",
      });
    }
    const mode = state.mode;
    if (mode === "rate_limit") {
      return openaiError(429, {
        message:
          `Rate limit reached for ${body.model} on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${retryAfter}s.`,
        type: "requests",
        code: "rate_limit_exceeded",
      }, { "retry-after": String(retryAfter), "x-ratelimit-remaining-requests": "0" });
    }
    if (mode === "quota") {
      return openaiError(429, {
        message: "You exceeded your current quota, please check your plan and billing details.",
        type: "insufficient_quota",
        code: "insufficient_quota",
      });
    }
    if (mode === "busy") {
      return openaiError(503, {
        message: "The server is overloaded or not ready yet.",
        type: "server_error",
      });
    }
    if (mode === "error500") {
      return openaiError(500, {
        message: "The server had an error while processing your request. Sorry about that!",
        type: "server_error",
      });
    }
    const model = body.model;
    const end = state.enter(model);
    let outcome: "ok" | "aborted" | "closing" = "ok";
    const gate = state.gate;
    if (gate) outcome = await waitUnlessGone(req, closing.signal, gate);
    if (outcome === "ok" && state.mode === "hang") outcome = await waitUnlessGone(req, closing.signal, null);
    if (outcome !== "ok") {
      end(outcome === "aborted" ? "aborted" : "done");
      return openaiError(503, { message: "The server is shutting down.", type: "server_error" });
    }
    const a = answer(body, mode);
    const refuses = mode === "refusal" && a.tools.length === 0;
    const answerPieces = refuses ? [] : a.pieces;
    const usage = mode === "usage_details"
      ? {
        ...a.usage,
        prompt_tokens_details: { cached_tokens: FAKE_USAGE_DETAILS.cached_tokens, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: FAKE_USAGE_DETAILS.reasoning_tokens,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      }
      : a.usage;
    const tokenLogprob = (piece: string) => ({
      token: piece,
      logprob: FAKE_LOGPROB,
      bytes: [...new TextEncoder().encode(piece)],
      top_logprobs: [],
    });
    const logprobsOf = (pieces: string[]) =>
      body.logprobs === true ? { content: pieces.map(tokenLogprob), refusal: null } : null;
    const id = `chatcmpl-${answerHash({ n: state.requests.length, model }).slice(0, 29)}`;
    const created = Math.floor(Date.now() / 1000);
    const encoder = new TextEncoder();

    if (body.stream !== true) {
      const message: Record<string, unknown> = {
        role: "assistant",
        content: a.tools.length > 0 || refuses ? null : a.pieces.join(""),
        refusal: refuses ? FAKE_REFUSAL : null,
        annotations: [],
      };
      if (a.tools.length > 0) {
        message.tool_calls = a.tools.map((tool) => ({
          id: tool.id,
          type: "function",
          function: { name: tool.name, arguments: tool.fragments.join("") },
        }));
      }
      const whole = encoder.encode(JSON.stringify({
        id,
        object: "chat.completion",
        created,
        model,
        choices: [{ index: 0, message, logprobs: logprobsOf(answerPieces), finish_reason: a.finish }],
        usage,
        service_tier: "default",
        system_fingerprint: "fp_fake0001",
      }));
      if (mode === "midstream_error") {
        end("done");
        return openaiError(500, {
          message: "The server had an error while processing your request. Sorry about that!",
          type: "server_error",
        });
      }
      const headers = { "content-type": "application/json" };
      if (mode === "stall_after_headers" || mode === "stall_between_events") {
        const sent = mode === "stall_after_headers" ? [] : [whole.slice(0, Math.floor(whole.length / 2))];
        return new Response(writeThenStall(sent, end, closing.signal), { headers });
      }
      const pieces = mode === "cut_stream" ? tear(whole.slice(0, Math.floor(whole.length / 2))) : tear(whole);
      return new Response(writeSlowly(pieces, end), { headers });
    }

    const includeUsage = body.stream_options?.include_usage === true;
    const events: string[] = [];
    const chunk = (choices: unknown[], usage: unknown = null) => {
      const c: Record<string, unknown> = {
        id,
        object: "chat.completion.chunk",
        created,
        model,
        service_tier: "default",
        system_fingerprint: "fp_fake0001",
        choices,
      };
      if (includeUsage) c.usage = usage;
      events.push(`data: ${JSON.stringify(c)}\n\n`);
    };
    const delta = (d: unknown, finish: string | null = null) =>
      chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finish }]);
    delta({ role: "assistant", content: a.tools.length > 0 ? null : "", refusal: null });
    for (const piece of answerPieces) {
      chunk([{ index: 0, delta: { content: piece }, logprobs: logprobsOf([piece]), finish_reason: null }]);
    }
    if (refuses) { for (const piece of words(FAKE_REFUSAL)) delta({ refusal: piece }); }
    a.tools.forEach((tool, index) => {
      delta({
        tool_calls: [{
          index,
          id: tool.id,
          type: "function",
          function: { name: tool.name, arguments: "" },
        }],
      });
      for (const fragment of tool.fragments) {
        delta({ tool_calls: [{ index, function: { arguments: fragment } }] });
      }
    });
    if (mode === "cut_stream" || mode === "midstream_error") {
      events.splice(3);
      if (mode === "midstream_error") {
        events.push(
          `data: ${
            JSON.stringify({
              error: {
                message: "The server had an error while processing your request. Sorry about that!",
                type: "server_error",
                param: null,
                code: null,
              },
            })
          }\n\n`,
        );
      }
    } else {
      delta({}, a.finish);
      if (includeUsage) chunk([], usage);
      events.push("data: [DONE]\n\n");
    }
    const stall = mode === "stall_after_headers" ? 0 : mode === "stall_between_events" ? 2 : -1;
    const sse = stall === -1
      ? writeSlowly(tear(encoder.encode(events.join(""))), end)
      : writeThenStall(events.slice(0, stall).map((e) => encoder.encode(e)), end, closing.signal);
    return new Response(sse, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-request-id": `req_${id.slice(9)}`,
      },
    });
  }

  async function handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (req.method === "POST" && path === "/v1/chat/completions") return await chat(req);
    await req.body?.cancel();
    if (req.method === "GET" && path === "/v1/models") {
      const denied = authorize(req);
      if (denied) return denied;
      return json({
        object: "list",
        data: models.map((m) => ({ id: m, object: "model", created: 1715367049, owned_by: "system" })),
      });
    }
    return openaiError(404, {
      message: `Invalid URL (${req.method} ${path})`,
      type: "invalid_request_error",
    });
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handle);
  let closed = false;
  return Object.assign(state, {
    url: `http://127.0.0.1:${server.addr.port}/v1`,
    apiKey,
    close: async () => {
      if (closed) return;
      closed = true;
      closing.abort();
      await server.shutdown();
    },
  });
}
