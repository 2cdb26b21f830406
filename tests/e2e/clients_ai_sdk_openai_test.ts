/**
 * The Vercel AI SDK against `/v1/chat/completions`, as its users write it: `@ai-sdk/openai` through
 * `.chat()` and `@ai-sdk/openai-compatible`, each served by Ollama, Anthropic and OpenAI in turn (forced by
 * the `x-routing-contract` header the SDKs send as a custom header), through `deno task serve`.
 */
import type { LanguageModel } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { AI_SDK_CASES, refusal, sensitiveHeaders } from "./clients_ai_sdk_cases.ts";
import { forceHeaders, PROVIDERS, servedBy, startClientsRouter } from "./clients_harness.ts";

/** The two ways the AI SDK speaks chat completions, each as a model factory for a base URL and headers. */
const SDKS: Record<string, (baseURL: string, headers: Record<string, string>) => LanguageModel> = {
  "@ai-sdk/openai .chat()": (baseURL, headers) =>
    createOpenAI({ baseURL, apiKey: "sk-client", headers }).chat("auto"),
  "@ai-sdk/openai-compatible": (baseURL, headers) =>
    createOpenAICompatible({ name: "router", baseURL, apiKey: "sk-client", headers, includeUsage: true })(
      "auto",
    ),
};

Deno.test("Vercel AI SDK on /v1/chat/completions: every case, served by each provider", async (t) => {
  const s = await startClientsRouter();
  try {
    for (const [sdk, make] of Object.entries(SDKS)) {
      for (const provider of PROVIDERS) {
        const model = make(`${s.url}/v1`, forceHeaders(provider));
        for (const c of AI_SDK_CASES) {
          await t.step(
            `${sdk} via ${provider}: ${c.name}`,
            () => servedBy(s, provider, () => c.run(model, provider, s)),
          );
        }
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
