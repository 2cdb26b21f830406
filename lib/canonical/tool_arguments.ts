/**
 * A canonical tool call carries its arguments as a JSON string (OpenAI's form); Ollama and Anthropic want
 * an object, and give one back. Both directions live here, once, for the inbound encoders and the
 * provider adapters alike; what a side does with arguments that are not an object is its own choice.
 */

/** Arguments read as a JSON object, or why they are not one. */
export type ArgumentsReading = { object: Record<string, unknown> } | { problem: "not_json" | "not_object" };

/**
 * Reads arguments as a JSON object: `{}` for an empty string (some OpenAI-compatible servers send "" for a
 * call without arguments); otherwise the parsed object, or why it is not one.
 */
export function readArguments(raw: string): ArgumentsReading {
  if (raw.trim() === "") return { object: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { problem: "not_json" };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return { problem: "not_object" };
  }
  return { object: parsed as Record<string, unknown> };
}

/** The arguments as a JSON object (see `readArguments`), or undefined when they are not one. */
export function argumentsObject(raw: string): Record<string, unknown> | undefined {
  const reading = readArguments(raw);
  return "object" in reading ? reading.object : undefined;
}

/** The canonical JSON-string form of arguments an upstream gave as an object (or already as a string). */
export function argumentsText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value ?? {});
}
