/**
 * The Vercel AI SDK cases the real-client tests run against every provider: what its users write with
 * `generateText` and `streamText`, whichever provider package (OpenAI or Anthropic dialect) made the model.
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
import {
  ANSWER_SCHEMA,
  CITY_SCHEMA,
  PNG_BASE64,
  type Provider,
  type startClientsRouter,
  upstreamSawImage,
  withMode,
} from "./clients_harness.ts";

/** The router a case runs against. */
export type Served = Awaited<ReturnType<typeof startClientsRouter>>;

/** One case: a name for the step and what it does with a model forced to `provider`. */
export interface AiSdkCase {
  name: string;
  run(model: LanguageModel, provider: Provider, s: Served): Promise<void>;
}

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

/** Every case, in the order the steps run; each asserts what a user of the SDK sees. */
export const AI_SDK_CASES: AiSdkCase[] = [
  {
    name: "generateText answers with text and usage",
    async run(model) {
      const result = await generateText({ model, prompt: "Say hello." });
      assert.ok(result.text.length > 0);
      assert.equal(result.finishReason, "stop");
      assert.ok((result.usage.inputTokens ?? 0) > 0, "input tokens are counted");
      assert.ok((result.usage.outputTokens ?? 0) > 0, "output tokens are counted");
    },
  },
  {
    name: "streamText streams the text",
    async run(model) {
      const result = streamText({ model, prompt: "Stream a short answer." });
      const parts: string[] = [];
      for await (const part of result.textStream) parts.push(part);
      assert.ok(parts.length > 1, "the answer arrives in more than one piece");
      assert.equal(parts.join(""), await result.text);
      assert.equal(await result.finishReason, "stop");
    },
  },
  {
    name: "streamText reports usage at the end of the stream",
    async run(model) {
      const result = streamText({ model, prompt: "Stream and count." });
      await result.consumeStream();
      const usage = await result.usage;
      assert.ok((usage.inputTokens ?? 0) > 0, `input tokens: ${usage.inputTokens}`);
      assert.ok((usage.outputTokens ?? 0) > 0, `output tokens: ${usage.outputTokens}`);
    },
  },
  {
    name: "generateText returns a tool call with parsed arguments",
    async run(model) {
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
    },
  },
  {
    name: "generateText returns parallel tool calls with distinct ids",
    async run(model, _provider, s) {
      const result = await withMode(s, "parallel_tools", () =>
        generateText({
          model,
          prompt: "Weather and time in Paris?",
          tools: { get_weather: callOnly("weather"), get_time: callOnly("time") },
        }));
      assert.deepEqual(result.toolCalls.map((c) => c.toolName).sort(), ["get_time", "get_weather"]);
      const ids = new Set(result.toolCalls.map((c) => c.toolCallId));
      assert.equal(ids.size, 2, "each call has its own id");
    },
  },
  {
    name: "streamText streams a tool call",
    async run(model) {
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
    },
  },
  {
    name: "a tool round trip: the tool's result goes back and the model answers",
    async run(model) {
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
    },
  },
  {
    name: "a multi-turn conversation with a system message",
    async run(model) {
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
    },
  },
  {
    name: "an image is seen",
    async run(model, provider, s) {
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
    },
  },
  {
    name: "structured output: an object that matches the schema",
    async run(model) {
      const result = await generateText({
        model,
        prompt: "Answer as JSON.",
        output: Output.object({ schema: jsonSchema<{ answer: string; note: string }>(ANSWER_SCHEMA) }),
      });
      assert.equal(typeof result.output.answer, "string");
      assert.equal(typeof result.output.note, "string");
    },
  },
  {
    name: "a stream cut by the upstream surfaces as an error, after the first text",
    async run(model, _provider, s) {
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
    },
  },
];

/** The contract header of a SENSITIVE request that only `provider` may serve. */
export function sensitiveHeaders(provider: Provider): Record<string, string> {
  return {
    "x-routing-contract": JSON.stringify({ classification: "SENSITIVE", provider_allowlist: [provider] }),
  };
}

/**
 * A refusal: SENSITIVE may not leave the host: forced to a cloud provider it is refused before any upstream call, and
 * forced to a failing Ollama it fails closed. Either way the SDK throws an API error carrying our reason code.
 */
export async function refusal(model: LanguageModel, provider: Provider, s: Served): Promise<void> {
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
