/**
 * The Anthropic Messages request body as the adapter sends it (`POST /v1/messages`): the members the
 * router writes when it translates a canonical request. A client's own body (`nativeBody`, validated by
 * the inbound dialect) is sent as this type too; members beyond these pass through untouched.
 */

/** A text block. */
export interface AnthropicTextBlock {
  type: "text";
  text: string;
}

/** An image block: base64 data or a URL. */
export interface AnthropicImageBlock {
  type: "image";
  source:
    | { type: "base64"; media_type: "image/png" | "image/jpeg" | "image/gif" | "image/webp"; data: string }
    | { type: "url"; url: string };
}

/** A text or image block (the blocks a `tool_result` may hold). */
export type AnthropicTextOrImageBlock = AnthropicTextBlock | AnthropicImageBlock;

/** An assistant's tool call. */
export interface AnthropicToolUseBlock {
  type: "tool_use";
  id: string;
  name: string;
  input: Record<string, unknown>;
}

/** A tool's result, in the user turn after the call. */
export interface AnthropicToolResultBlock {
  type: "tool_result";
  tool_use_id: string;
  content?: string | AnthropicTextOrImageBlock[];
  is_error?: boolean;
}

/** An extended-thinking block of an earlier answer (its signature proves Anthropic wrote it). */
export interface AnthropicThinkingBlock {
  type: "thinking";
  thinking: string;
  signature: string;
}

/** A content block of a user turn. */
export type AnthropicUserBlock = AnthropicTextOrImageBlock | AnthropicToolResultBlock;
/** A content block of an assistant turn (redacted thinking and the like pass through as they came). */
export type AnthropicAssistantBlock =
  | AnthropicTextBlock
  | AnthropicToolUseBlock
  | AnthropicThinkingBlock
  | { type: "redacted_thinking"; data: string };

/** One turn of the conversation. */
export type AnthropicMessage =
  | { role: "user"; content: string | AnthropicUserBlock[] }
  | { role: "assistant"; content: string | AnthropicAssistantBlock[] };

/** A tool definition. */
export interface AnthropicTool {
  name: string;
  description?: string;
  input_schema: { type: "object"; [member: string]: unknown };
}

/** How the model may use tools. */
export type AnthropicToolChoice =
  | { type: "auto"; disable_parallel_tool_use?: boolean }
  | { type: "any"; disable_parallel_tool_use?: boolean }
  | { type: "tool"; name: string; disable_parallel_tool_use?: boolean }
  | { type: "none" };

/** The request body. */
export interface AnthropicMessagesBody {
  model: string;
  max_tokens: number;
  messages: AnthropicMessage[];
  system?: string | AnthropicTextBlock[];
  temperature?: number;
  top_p?: number;
  stop_sequences?: string[];
  stream?: boolean;
  metadata?: { user_id?: string | null };
  tools?: AnthropicTool[];
  tool_choice?: AnthropicToolChoice;
}
