/**
 * A forced tool call on the local model. Ollama cannot be made to call a tool, but it can be made to answer
 * JSON that matches a schema (`format`). A request that forces exactly one tool (OpenAI `tool_choice` naming a
 * function, or "required" with one tool; Anthropic `tool_choice` `tool`, or `any` with one tool) asks for
 * exactly that: the tool's arguments as JSON. So the tool's `parameters` go to Ollama as `format`, no tools are
 * sent, and Ollama's JSON answer comes back as one call of that tool, as the cloud providers would send it.
 * This is how `@ai-sdk/anthropic` and LangChain `ChatAnthropic` ask for structured output.
 */
import type { ChatRequest, ChatResult, StreamEvent, ToolDefinition } from "../../canonical/mod.ts";
import { UpstreamError } from "../types.ts";
import { unsupportedFieldError } from "../http_errors.ts";

/** The one tool a request forces the model to call, or null when it forces none. */
export interface ForcedTool {
  name: string;
  /** The tool's JSON Schema for its arguments (an empty object schema when the tool declares none). */
  schema: Record<string, unknown>;
}

/**
 * The tool a request forces, for the local model; null when it forces none. Throws `UNSUPPORTED_FIELD`
 * (fallback-worthy) for what Ollama cannot honour: "required" among several tools (a choice between tools
 * that JSON output cannot express) and a forced tool beside `response_format` (both would need `format`).
 */
export function forcedTool(request: ChatRequest): ForcedTool | null {
  const tools = request.tools ?? [];
  const choice = request.tool_choice;
  if (tools.length === 0 || choice === undefined || choice === "none" || choice === "auto") return null;
  let tool: ToolDefinition | undefined;
  if (choice === "required") {
    if (tools.length > 1) {
      throw unsupportedFieldError(
        "tool_choice",
        'the local model cannot be made to pick one of several tools (tool_choice "required" or Anthropic "any" with more than one tool); name the tool to call, send only that tool, use "auto", or allow a cloud provider',
      );
    }
    tool = tools[0];
  } else {
    tool = tools.find((t) => t.function.name === choice.function.name);
    if (tool === undefined) {
      throw new UpstreamError(
        "tool_choice names a tool that is not among the request's tools; name one of the tools sent",
        {
          status: 400,
          code: "INVALID_REQUEST",
          type: "invalid_request_error",
          fallback: false,
          param: "tool_choice",
        },
      );
    }
  }
  const format = request.response_format;
  if (format !== undefined && format.type !== "text") {
    throw unsupportedFieldError(
      "tool_choice",
      "the local model cannot force a tool call and a response_format at once (both become its JSON format); send one of them, or allow a cloud provider",
    );
  }
  return { name: tool.function.name, schema: tool.function.parameters ?? { type: "object", properties: {} } };
}

/**
 * Turns the local model's JSON answer into the forced call: arguments are the answer's text, `content`
 * null; finish `tool_calls` (`length` stays, so a cut answer is not mistaken for a whole call).
 */
export function toForcedCall(result: ChatResult, tool: ForcedTool, mint: () => string): ChatResult {
  if (result.tool_calls.length > 0) return result;
  const args = result.content ?? "";
  return {
    ...result,
    content: null,
    tool_calls: [{ id: mint(), type: "function", function: { name: tool.name, arguments: args } }],
    finish_reason: result.finish_reason === "length" ? "length" : "tool_calls",
  };
}

/**
 * The same for a stream: the answer's text pieces become the call's argument fragments, the call starting
 * with the first piece (or at the end, when no text came), and `finish` says `tool_calls`.
 */
export function forcedCallStream(
  tool: ForcedTool,
  mint: () => string,
): TransformStream<StreamEvent, StreamEvent> {
  let started = false;
  const start = (controller: TransformStreamDefaultController<StreamEvent>) => {
    if (started) return;
    started = true;
    controller.enqueue({ type: "tool_call_start", index: 0, id: mint(), name: tool.name });
  };
  return new TransformStream<StreamEvent, StreamEvent>({
    transform(event, controller) {
      if (event.type === "text") {
        start(controller);
        controller.enqueue({ type: "tool_call_args", index: 0, fragment: event.text });
      } else if (event.type === "finish") {
        start(controller);
        const finish = event.finish_reason === "length" ? "length" : "tool_calls";
        controller.enqueue({ ...event, finish_reason: finish });
      } else controller.enqueue(event);
    },
  });
}
