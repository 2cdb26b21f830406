/** Requests the explorer tests (API and browser) make through the router before they look at its records. */
import type { ServedRouter } from "./serve_harness.ts";

/** Two answered requests: one served locally, one where local fails and the cloud answers. */
export async function sendLocalAndCloud(s: ServedRouter): Promise<{ local: string; cloud: string }> {
  const local = await s.client.chat.completions
    .create({ model: "auto", messages: [{ role: "user", content: "Say hello." }], seed: 42, temperature: 0 })
    .withResponse();
  s.ollama.mode = "error500";
  const cloud = await s.client.chat.completions
    .create({ model: "auto", messages: [{ role: "user", content: "Answer even if local fails." }] })
    .withResponse();
  s.ollama.mode = "normal";
  return {
    local: local.response.headers.get("x-request-id")!,
    cloud: cloud.response.headers.get("x-request-id")!,
  };
}
