/** The request features of a plain chat request, shared by the decide(), EDR and replay tests. */

import type { RequestFeatures } from "../../lib/contract/mod.ts";

/** A non-streaming text request with no tools, images, JSON mode or output cap; `overrides` replace fields. */
export function plainFeatures(overrides: Partial<RequestFeatures> = {}): RequestFeatures {
  return {
    requested_model: "auto",
    stream: false,
    has_tools: false,
    has_images: false,
    json_mode: false,
    estimated_prompt_tokens: 20,
    max_output_tokens: null,
    ...overrides,
  };
}
