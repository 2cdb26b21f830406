/**
 * A canonical tool call carries its arguments as a JSON string (OpenAI's form); Ollama and Anthropic want
 * an object, and give one back. Both directions live here, once, for the inbound encoders and the
 * provider adapters alike; what a side does with arguments that are not an object is its own choice.
 */

/**
 * The arguments as a JSON object: `{}` for an empty string (some OpenAI-compatible servers send "" for a
 * call without arguments), undefined when they are not valid JSON or not an object.
 */
export function argumentsObject(raw: string): Record<string, unknown> | undefined {
  if (raw.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  return parsed as Record<string, unknown>;
}

/** The canonical JSON-string form of arguments an upstream gave as an object (or already as a string). */
export function argumentsText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value ?? {});
}
