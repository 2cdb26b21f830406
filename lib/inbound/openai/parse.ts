/**
 * Admits an OpenAI chat-completions body into the canonical request: refuses by name what the router
 * cannot honour, leaves out the members clients echo back, and parses the rest with `chatRequestSchema`.
 * A body it cannot accept throws `InboundError`.
 */
import { isFieldName } from "../../client_text.ts";
import type { ChatRequest } from "../../canonical/mod.ts";
import { type Issue, unknownMemberError, unsupportedField, validationError } from "../issues.ts";
import { InboundError } from "../types.ts";
import { chatRequestSchema, KNOWN_CHAT_FIELDS, REFUSED_FIELDS, withoutNullFields } from "./schema.ts";

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const unsupported = unsupportedField;

/**
 * The body ready for `chatRequestSchema` (`withoutNullFields`), after refusing by name what the router
 * cannot honour: a field of `REFUSED_FIELDS`, a field no API defines, `n` above 1 and an audio modality
 * (400 `UNSUPPORTED_FIELD`), and `top_logprobs` without `logprobs: true` (400 `INVALID_REQUEST`).
 */
export function admitChatFields(body: Json): Json {
  const clean = withoutNullFields(body);
  for (const key of Object.keys(clean)) {
    if (Object.hasOwn(REFUSED_FIELDS, key)) throw unsupported(key, REFUSED_FIELDS[key]);
    if (KNOWN_CHAT_FIELDS.has(key)) continue;
    // The record holds no client-chosen text: the name reaches the client only, and only when it looks like one.
    const recorded =
      "the request has a top-level field that OpenAI's chat completions API does not define; remove it";
    if (!isFieldName(key)) throw unsupported(null, recorded);
    throw unsupported(
      key,
      `${key} is not a field of OpenAI's chat completions API, nor one of the router's (routing_contract, authority); remove it or fix its spelling`,
      recorded,
    );
  }
  if (typeof clean.n === "number" && clean.n > 1) {
    throw unsupported(
      "n",
      "n asks for several choices, and the router returns one; send n: 1 (or leave it out) and repeat the request for more",
    );
  }
  if (Array.isArray(clean.modalities) && clean.modalities.includes("audio")) {
    throw unsupported(
      "modalities",
      'modalities asks for audio, and the router answers in text only; send ["text"] or leave modalities out',
    );
  }
  if (clean.top_logprobs !== undefined && clean.logprobs !== true) {
    throw new InboundError(
      400,
      "INVALID_REQUEST",
      "top_logprobs needs logprobs: true; send both or neither",
      {
        param: "top_logprobs",
      },
    );
  }
  return clean;
}

const isNull = (value: unknown) => value === null;
const isNothing = (value: unknown) => value === null || (Array.isArray(value) && value.length === 0);

/**
 * Members real clients echo back inside the request that carry nothing for the next answer, by the object
 * they sit in, with the values taken: they are left out before parsing (docs/protocols.md, "Members inside
 * messages, parts and tools"). Any other value, and any other unknown member, is refused by name.
 */
export const ECHOED_MEMBERS: Readonly<Record<string, Readonly<Record<string, (value: unknown) => boolean>>>> =
  {
    "assistant message": {
      // OpenAI's SDKs echo an answer's message whole: these are its empty members.
      annotations: isNothing,
      audio: isNull,
      function_call: isNull,
      // The router's own answer, echoed: earlier reasoning is not input to the next turn.
      reasoning_content: (value) => value === null || typeof value === "string",
      refusal: isNull,
    },
    // A call accumulated from stream deltas keeps its delta index, which the array's order already says.
    "tool call": { index: (value) => Number.isInteger(value) },
    stream_options: { include_obfuscation: (value) => value === null || value === false },
  };

/** The `ECHOED_MEMBERS` entry for the object at `path`, holding `holder`. */
function echoedMembers(path: PropertyKey[], holder: unknown) {
  if (path.length === 2 && path[0] === "messages" && isObject(holder) && holder.role === "assistant") {
    return ECHOED_MEMBERS["assistant message"];
  }
  if (path.length === 4 && path[0] === "messages" && path[2] === "tool_calls") {
    return ECHOED_MEMBERS["tool call"];
  }
  if (path.length === 1 && path[0] === "stream_options") return ECHOED_MEMBERS.stream_options;
  return undefined;
}

function valueAt(value: unknown, path: PropertyKey[]): unknown {
  for (const key of path) value = (value as Record<PropertyKey, unknown>)?.[key];
  return value;
}

/** `value` with the members `keys` of the object at `path` left out, copying only along the path. */
function omitAt(value: unknown, path: PropertyKey[], keys: string[]): unknown {
  if (Array.isArray(value)) {
    const copy = value.slice();
    copy[path[0] as number] = omitAt(copy[path[0] as number], path.slice(1), keys);
    return copy;
  }
  const copy = { ...(value as Json) };
  if (path.length === 0) { for (const key of keys) delete copy[key]; }
  else copy[path[0] as string] = omitAt(copy[path[0] as string], path.slice(1), keys);
  return copy;
}

/**
 * Parses an OpenAI body (`admitChatFields`, then `chatRequestSchema`). The members of `ECHOED_MEMBERS` are
 * left out; any other unknown member inside a message, part or tool throws `unknownMemberError`. Returns
 * zod's result, whose failure is a bad value. A body without unknown members is parsed once, as before.
 */
export function parseChatBody(body: Json): ReturnType<typeof chatRequestSchema.safeParse> {
  let admitted: unknown = admitChatFields(body);
  const parsed = chatRequestSchema.safeParse(admitted);
  if (parsed.success) return parsed;
  const issues = parsed.error.issues as Issue[];
  const unknown = issues.filter((i) => i.code === "unrecognized_keys");
  // SDKs that echo an answer whole send `tool_calls: null` for "no calls" (docs/protocols.md).
  const nullCalls = issues.filter((i) =>
    i.code === "invalid_type" && i.path.length === 3 && i.path[0] === "messages" &&
    i.path[2] === "tool_calls" &&
    valueAt(admitted, i.path) === null
  );
  if (unknown.length === 0 && nullCalls.length === 0) return parsed;
  for (const issue of nullCalls) admitted = omitAt(admitted, issue.path.slice(0, 2), ["tool_calls"]);
  for (const issue of unknown) {
    const holder = valueAt(admitted, issue.path);
    const echoed = echoedMembers(issue.path, holder);
    const keys = (issue.keys as string[]).map(String);
    const refused = keys.find((key) =>
      echoed === undefined || !Object.hasOwn(echoed, key) || !echoed[key]((holder as Json)[key])
    );
    if (refused !== undefined) {
      throw unknownMemberError([{ ...issue, keys: [refused] }], "OpenAI's chat completions API");
    }
    admitted = omitAt(admitted, issue.path, keys);
  }
  return chatRequestSchema.safeParse(admitted);
}

/** The canonical request for an OpenAI body (router extension fields already removed); throws `InboundError`. */
export function parseOpenAIRequest(body: Json): ChatRequest {
  const parsed = parseChatBody(body);
  if (!parsed.success) throw validationError(parsed.error.issues);
  return parsed.data;
}
