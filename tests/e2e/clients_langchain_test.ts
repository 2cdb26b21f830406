/**
 * LangChain JS against the router, as its users write it: `ChatOpenAI` on `/v1/chat/completions` and
 * `ChatAnthropic` on `/v1/messages`, each served by Ollama, Anthropic and OpenAI in turn (forced by the
 * `x-routing-contract` header sent as a default header), through `deno task serve`.
 */
import assert from "node:assert/strict";
import { ChatAnthropic } from "@langchain/anthropic";
import { ChatOpenAI } from "@langchain/openai";
import type { BaseChatModel } from "@langchain/core/language_models/chat_models";
import {
  AIMessage,
  type AIMessageChunk,
  HumanMessage,
  SystemMessage,
  ToolMessage,
} from "@langchain/core/messages";
import { sensitiveHeaders } from "./clients_ai_sdk_cases.ts";
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

type Served = Awaited<ReturnType<typeof startClientsRouter>>;

/** The two LangChain chat models, each made for a router URL and the headers to send. */
const MODELS: Record<string, (url: string, headers: Record<string, string>) => BaseChatModel> = {
  ChatOpenAI: (url, headers) =>
    new ChatOpenAI({
      model: "auto",
      apiKey: "sk-client",
      maxRetries: 0,
      streamUsage: true,
      configuration: { baseURL: `${url}/v1`, defaultHeaders: headers },
    }),
  ChatAnthropic: (url, headers) =>
    new ChatAnthropic({
      model: "auto",
      apiKey: "sk-client",
      maxRetries: 0,
      anthropicApiUrl: url,
      clientOptions: { defaultHeaders: headers },
    }),
};

/** Tools as LangChain takes them in `bindTools` (OpenAI function shape). */
const toolDef = (name: string) => ({
  type: "function" as const,
  function: { name, description: `The ${name.replace("get_", "")} in a city`, parameters: CITY_SCHEMA },
});

/** Concatenates a stream of chunks into one message, as LangChain users do. */
async function gather(
  stream: AsyncIterable<AIMessageChunk>,
): Promise<{ chunks: number; message: AIMessageChunk }> {
  let message: AIMessageChunk | undefined;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    message = message ? message.concat(chunk) : chunk;
  }
  assert.ok(message, "the stream delivered chunks");
  return { chunks, message };
}

/** One case: a step name and what it does with a model forced to `provider`. */
interface LcCase {
  name: string;
  run(model: BaseChatModel, provider: Provider, s: Served): Promise<void>;
}

/**
 * Cases that fail today, left out until the router handles them (issue 16); none now: the tool
 * `ChatAnthropic.withStructuredOutput` forces is answered by the local model as JSON in the tool's schema.
 */
const FAILING: Record<string, string[]> = {};

const CASES: LcCase[] = [
  {
    name: "invoke answers with text and usage",
    async run(model) {
      const answer = await model.invoke("Say hello.");
      assert.ok(typeof answer.content === "string" && answer.content.length > 0);
      assert.ok((answer.usage_metadata?.input_tokens ?? 0) > 0, "input tokens are counted");
      assert.ok((answer.usage_metadata?.output_tokens ?? 0) > 0, "output tokens are counted");
    },
  },
  {
    name: "stream streams the text",
    async run(model) {
      const { chunks, message } = await gather(await model.stream("Stream a short answer."));
      assert.ok(chunks > 1, "the answer arrives in more than one chunk");
      assert.ok(String(message.content).length > 0);
    },
  },
  {
    name: "stream reports usage",
    async run(model) {
      const { message } = await gather(await model.stream("Stream and count."));
      assert.ok(
        (message.usage_metadata?.input_tokens ?? 0) > 0,
        `input: ${message.usage_metadata?.input_tokens}`,
      );
      assert.ok(
        (message.usage_metadata?.output_tokens ?? 0) > 0,
        `output: ${message.usage_metadata?.output_tokens}`,
      );
    },
  },
  {
    name: "a stream counts the same input tokens as the same request unstreamed",
    async run(model) {
      const whole = await model.invoke("Count my tokens, please.");
      const { message } = await gather(await model.stream("Count my tokens, please."));
      assert.equal(message.usage_metadata?.input_tokens, whole.usage_metadata?.input_tokens);
    },
  },
  {
    name: "bindTools: one tool call with parsed arguments",
    async run(model) {
      const answer = await model.bindTools!([toolDef("get_weather")]).invoke("Weather in Paris?");
      assert.equal(answer.tool_calls?.length, 1);
      assert.equal(answer.tool_calls![0].name, "get_weather");
      assert.deepEqual(answer.tool_calls![0].args, { city: "Paris" });
      assert.ok(answer.tool_calls![0].id, "the call has an id");
    },
  },
  {
    name: "bindTools: parallel tool calls with distinct ids",
    async run(model, _provider, s) {
      const bound = model.bindTools!([toolDef("get_weather"), toolDef("get_time")]);
      const answer = await withMode(s, "parallel_tools", () => bound.invoke("Weather and time in Paris?"));
      assert.deepEqual(answer.tool_calls?.map((c) => c.name).sort(), ["get_time", "get_weather"]);
      assert.equal(new Set(answer.tool_calls?.map((c) => c.id)).size, 2, "each call has its own id");
    },
  },
  {
    name: "a streamed tool call arrives whole",
    async run(model) {
      const { message } = await gather(await model.bindTools!([toolDef("get_weather")]).stream("Weather?"));
      assert.equal(message.tool_calls?.length, 1);
      assert.equal(message.tool_calls![0].name, "get_weather");
      assert.deepEqual(message.tool_calls![0].args, { city: "Paris" });
    },
  },
  {
    name: "a tool round trip: the result goes back as a ToolMessage and the model answers",
    async run(model) {
      const bound = model.bindTools!([toolDef("get_weather")]);
      const question = new HumanMessage("Weather in Paris?");
      const call = await bound.invoke([question]);
      const id = call.tool_calls![0].id!;
      const answer = await bound.invoke([
        question,
        call,
        new ToolMessage({ tool_call_id: id, content: "sunny" }),
      ]);
      assert.equal(answer.tool_calls?.length ?? 0, 0);
      assert.ok(String(answer.content).length > 0);
    },
  },
  {
    name: "a multi-turn conversation with a system message",
    async run(model) {
      const answer = await model.invoke([
        new SystemMessage("You are terse."),
        new HumanMessage("Hello."),
        new AIMessage("Hi."),
        new HumanMessage("And now?"),
      ]);
      assert.ok(String(answer.content).length > 0);
    },
  },
  {
    name: "an image is seen",
    async run(model, provider, s) {
      const answer = await model.invoke([
        new HumanMessage({
          content: [
            { type: "text", text: "What is in this picture?" },
            { type: "image_url", image_url: { url: `data:image/png;base64,${PNG_BASE64}` } },
          ],
        }),
      ]);
      assert.ok(String(answer.content).length > 0);
      assert.ok(upstreamSawImage(s, provider), "the image reached the model");
    },
  },
  {
    name: "withStructuredOutput returns an object that matches the schema",
    async run(model) {
      const structured = model.withStructuredOutput<{ answer: string; note: string }>({
        ...ANSWER_SCHEMA,
        title: "answer",
        description: "An answer and a note",
      });
      const result = await structured.invoke("Answer as JSON.");
      assert.equal(typeof result.answer, "string");
      assert.equal(typeof result.note, "string");
    },
  },
  {
    name: "a stream cut by the upstream is an error, after the first text",
    async run(model, _provider, s) {
      let text = "";
      const error = await withMode(s, "cut_stream", async () => {
        try {
          for await (const chunk of await model.stream("Stream, then break.")) text += String(chunk.content);
          return null;
        } catch (e) {
          return e;
        }
      });
      assert.ok(text.length > 0, "text from before the cut arrived");
      assert.ok(error instanceof Error, "the cut is an error, not a quiet end");
    },
  },
];

/** SENSITIVE forced to a provider it may not use (or to a failing Ollama) is an error with our reason code. */
async function refusal(model: BaseChatModel, provider: Provider, s: Served): Promise<void> {
  if (provider === "local") s.ollama.mode = "error500";
  try {
    const error = await model.invoke("Secret.").then(() => null, (e) => e);
    assert.ok(error instanceof Error, `an error, not ${error}`);
    const status = (error as { status?: number }).status;
    assert.equal(status, 503);
    assert.match(
      JSON.stringify(error) + error.message,
      /[A-Z]+_[A-Z_]+/,
      "the error carries our reason code",
    );
  } finally {
    s.ollama.mode = "normal";
  }
}

Deno.test("LangChain JS on both dialects: every case, served by each provider", async (t) => {
  const s = await startClientsRouter();
  try {
    for (const [name, make] of Object.entries(MODELS)) {
      for (const provider of PROVIDERS) {
        const model = make(s.url, forceHeaders(provider));
        for (const c of CASES.filter((c) => !FAILING[`${name} via ${provider}`]?.includes(c.name))) {
          await t.step(
            `${name} via ${provider}: ${c.name}`,
            () => servedBy(s, provider, () => c.run(model, provider, s)),
          );
        }
        await t.step(
          `${name} via ${provider}: a SENSITIVE request it may not serve is refused by code`,
          () => refusal(make(s.url, sensitiveHeaders(provider)), provider, s),
        );
      }
    }
  } finally {
    await s.close();
  }
});
