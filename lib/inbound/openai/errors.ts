/** OpenAI's error body, as every OpenAI SDK reads it. */

/** What an OpenAI error body says: our message, the OpenAI error type, the field to blame, our reason code. */
export interface OpenAIErrorInfo {
  message: string;
  type: string;
  param: string | null;
  code: string;
}

/** The OpenAI-shaped error body: `{"error":{"message","type","param","code"}}`. */
export function openAIErrorBody(error: OpenAIErrorInfo): { error: Record<string, unknown> } {
  return { error: { message: error.message, type: error.type, param: error.param, code: error.code } };
}
