/**
 * The Vercel AI SDK against `/v1/chat/completions`, as its users write it: `@ai-sdk/openai` through
 * `.chat()` and `@ai-sdk/openai-compatible`, each served by Ollama, Anthropic and OpenAI in turn (forced by
 * the `x-routing-contract` header the SDKs send as a custom header), through `deno task serve`.
 */
import assert from "node:assert/strict";
import {
  APICallError,
  generateText,
  jsonSchema,
  type LanguageModel,
  Output,
  stepCountIs,
  streamText,
  tool,
} from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import {
  ANSWER_SCHEMA,
  CITY_SCHEMA,
  forceHeaders,
  PNG_BASE64,
  type Provider,
  PROVIDERS,
  servedBy,
  startClientsRouter,
  upstreamSawImage,
  withMode,
} from "./clients_harness.ts";

/** The two ways the AI SDK speaks chat completions, each as a model factory for a base URL and headers. */
const SDKS: Record<string, (baseURL: string, headers: Record<string, string>) => LanguageModel> = {
  "@ai-sdk/openai .chat()": (baseURL, headers) =>
    createOpenAI({ baseURL, apiKey: "sk-client", headers }).chat("auto"),
  "@ai-sdk/openai-compatible": (baseURL, headers) =>
    createOpenAICompatible({ name: "router", baseURL, apiKey: "sk-client", headers, includeUsage: true })(
      "auto",
    ),
};

/** A tool the model may call; its answer is fixed so the round trip is deterministic. */
const cityTool = (what: string) =>
  tool({
    description: `The ${what} in a city`,
    inputSchema: jsonSchema<{ city: string }>(CITY_SCHEMA),
    execute: ({ city }) => Promise.resolve(`${what} in ${city}: fine`),
  });

/** A tool with no `execute`: the SDK hands its calls back to the caller. */
const callOnly = (what: string) =>
  tool({ description: `The ${what} in a city`, inputSchema: jsonSchema<{ city: string }>(CITY_SCHEMA) });

Deno.test("Vercel AI SDK on /v1/chat/completions: every case, served by each provider", async (t) => {
  const s = await startClientsRouter();
  try {
    for (const [sdk, make] of Object.entries(SDKS)) {
      for (const provider of PROVIDERS) {
        const model = make(`${s.url}/v1`, forceHeaders(provider));
        const step = (name: string, fn: () => Promise<void>) =>
          t.step(`${sdk} via ${provider}: ${name}`, () => servedBy(s, provider, fn));
        await runCases(step, model, provider, s);
        await t.step(
          `${sdk} via ${provider}: a SENSITIVE request it may not serve is refused by code`,
          () => refusal(make(`${s.url}/v1`, sensitiveHeaders(provider)), provider, s),
        );
      }
    }
  } finally {
    await s.close();
  }
});

type Step = (name: string, fn: () => Promise<void>) => Promise<boolean>;
type Served = Awaited<ReturnType<typeof startClientsRouter>>;

/** The contract header of a SENSITIVE request that only `provider` may serve. */
function sensitiveHeaders(provider: Provider): Record<string, string> {
  return {
    "x-routing-contract": JSON.stringify({ classification: "SENSITIVE", provider_allowlist: [provider] }),
  };
}

/**
 * SENSITIVE may not leave the host: forced to a cloud provider it is refused before any upstream call, and
 * forced to a failing Ollama it fails closed. Either way the SDK throws an API error carrying our reason code.
 */
async function refusal(model: LanguageModel, provider: Provider, s: Served): Promise<void> {
  if (provider === "local") s.ollama.mode = "error500";
  try {
    const error = await generateText({ model, prompt: "Secret.", maxRetries: 0 }).then(() => null, (e) => e);
    assert.ok(APICallError.isInstance(error), `an API error, not ${error}`);
    assert.equal(error.statusCode, 503);
    assert.match(String(error.responseBody), /"code":"[A-Z_]+"/, "the body carries our reason code");
  } finally {
    s.ollama.mode = "normal";
  }
}

async function runCases(step: Step, model: LanguageModel, provider: Provider, s: Served): Promise<void> {
  await step("generateText answers with text and usage", async () => {
    const result = await generateText({ model, prompt: "Say hello." });
    assert.ok(result.text.length > 0);
    assert.equal(result.finishReason, "stop");
    assert.ok((result.usage.inputTokens ?? 0) > 0, "input tokens are counted");
    assert.ok((result.usage.outputTokens ?? 0) > 0, "output tokens are counted");
  });

  await step("streamText streams the text", async () => {
    const result = streamText({ model, prompt: "Stream a short answer." });
    const parts: string[] = [];
    for await (const part of result.textStream) parts.push(part);
    assert.ok(parts.length > 1, "the answer arrives in more than one piece");
    assert.equal(parts.join(""), await result.text);
    assert.equal(await result.finishReason, "stop");
  });

  await step("streamText reports usage at the end of the stream", async () => {
    const result = streamText({ model, prompt: "Stream and count." });
    await result.consumeStream();
    const usage = await result.usage;
    assert.ok((usage.inputTokens ?? 0) > 0, `input tokens: ${usage.inputTokens}`);
    assert.ok((usage.outputTokens ?? 0) > 0, `output tokens: ${usage.outputTokens}`);
  });

  await step("generateText returns a tool call with parsed arguments", async () => {
    const result = await generateText({
      model,
      prompt: "What is the weather in Paris?",
      tools: { get_weather: callOnly("weather") },
    });
    assert.equal(result.finishReason, "tool-calls");
    assert.equal(result.toolCalls.length, 1);
    assert.equal(result.toolCalls[0].toolName, "get_weather");
    assert.deepEqual(result.toolCalls[0].input, { city: "Paris" });
    assert.ok(result.toolCalls[0].toolCallId, "the call has an id");
  });

  await step("generateText returns parallel tool calls with distinct ids", async () => {
    const result = await withMode(s, "parallel_tools", () =>
      generateText({
        model,
        prompt: "Weather and time in Paris?",
        tools: { get_weather: callOnly("weather"), get_time: callOnly("time") },
      }));
    assert.deepEqual(result.toolCalls.map((c) => c.toolName).sort(), ["get_time", "get_weather"]);
    const ids = new Set(result.toolCalls.map((c) => c.toolCallId));
    assert.equal(ids.size, 2, "each call has its own id");
  });

  await step("streamText streams a tool call", async () => {
    const result = streamText({
      model,
      prompt: "What is the weather in Paris?",
      tools: { get_weather: callOnly("weather") },
    });
    await result.consumeStream();
    const calls = await result.toolCalls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].toolName, "get_weather");
    assert.deepEqual(calls[0].input, { city: "Paris" });
    assert.equal(await result.finishReason, "tool-calls");
  });

  await step("a tool round trip: the tool's result goes back and the model answers", async () => {
    const result = await generateText({
      model,
      prompt: "What is the weather in Paris?",
      tools: { get_weather: cityTool("weather") },
      stopWhen: stepCountIs(3),
    });
    assert.equal(result.steps.length, 2, "a tool step, then an answer");
    assert.equal(result.steps[0].toolResults[0]?.output, "weather in Paris: fine");
    assert.ok(result.text.length > 0);
    assert.equal(result.finishReason, "stop");
  });

  await step("a multi-turn conversation with a system message", async () => {
    const result = await generateText({
      model,
      system: "You are terse.",
      messages: [
        { role: "user", content: "Hello." },
        { role: "assistant", content: "Hi." },
        { role: "user", content: "And now?" },
      ],
    });
    assert.ok(result.text.length > 0);
    assert.equal(result.finishReason, "stop");
  });

  await step("an image is seen", async () => {
    const result = await generateText({
      model,
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "What is in this picture?" },
          { type: "file", mediaType: "image/png", data: PNG_BASE64 },
        ],
      }],
    });
    assert.ok(result.text.length > 0);
    assert.ok(upstreamSawImage(s, provider), "the image reached the model");
  });

  await step("structured output: an object that matches the schema", async () => {
    const result = await generateText({
      model,
      prompt: "Answer as JSON.",
      output: Output.object({ schema: jsonSchema<{ answer: string; note: string }>(ANSWER_SCHEMA) }),
    });
    assert.equal(typeof result.output.answer, "string");
    assert.equal(typeof result.output.note, "string");
  });

  await step("a stream cut by the upstream surfaces as an error, after the first text", async () => {
    const errors: unknown[] = [];
    const text = await withMode(s, "cut_stream", async () => {
      const result = streamText({
        model,
        prompt: "Stream, then break.",
        onError: ({ error }) => errors.push(error),
      });
      let seen = "";
      for await (const part of result.fullStream) {
        if (part.type === "text-delta") seen += part.text;
        if (part.type === "error") errors.push(part.error);
      }
      return seen;
    });
    assert.ok(text.length > 0, "text from before the cut arrived");
    assert.ok(errors.length > 0, "the cut is an error, not a quiet end");
  });
}
