import type { ChatResult, StreamEvent, ToolCall } from "../canonical/mod.ts";

/** What `Promise.race` yields when a stream has nothing queued right now. */
export const NOT_READY_MARK = Symbol("not ready");
/** An already-settled promise that loses a race only to an already-settled read. */
export const NOT_READY = Promise.resolve(NOT_READY_MARK);

/** Assembles streamed events into the output the EDR hashes. */
export class OutputAssembler {
  #text = "";
  #calls: { id: string; name: string; args: string }[] = [];

  add(event: StreamEvent): void {
    if (event.type === "text") this.#text += event.text;
    else if (event.type === "tool_call_start") {
      this.#calls[event.index] = { id: event.id, name: event.name, args: "" };
    } else if (event.type === "tool_call_args") {
      const call = this.#calls[event.index];
      if (call) call.args += event.fragment;
    }
  }

  output(
    finishReason: ChatResult["finish_reason"],
  ): { content: string | null; tool_calls: ToolCall[]; finish_reason: ChatResult["finish_reason"] } {
    const tool_calls: ToolCall[] = this.#calls.filter(Boolean).map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.args },
    }));
    return { content: this.#text === "" ? null : this.#text, tool_calls, finish_reason: finishReason };
  }
}
