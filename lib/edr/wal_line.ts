/**
 * One WAL line (docs/edr-format.md): `{"record":R}` or `{"input":I,"record":R}` and a newline, where R is
 * the record's canonical text and I the captured input's. The writer encodes lines here and the
 * materializer worker parses them here: it walks the line's JSON structure (strings, nesting) to find the
 * member boundaries, so no text inside an input or a record can be mistaken for the framing. No
 * dependencies, so the worker loads nothing else for it.
 */

/** Where a line's parts are, as offsets into the bytes it was parsed from, and what its record names. */
export interface WalLineParts {
  /** The input's canonical text `[start, end)`, or null when the line carries none. */
  input: [number, number] | null;
  /** The record's canonical text `[start, end)`. */
  record: [number, number];
  decisionCoreHash: string;
  /** The SHA-256 that `replay.required_inputs_pointer` names, or null when it names none. */
  inputHash: string | null;
}

/** Anything a line is appended to (the writer's `Utf8Builder`). */
export interface TextSink {
  append(text: string): void;
}

/** Appends the WAL line of a record (canonical text) and, the first time it is logged, its input. */
export function appendWalLine(sink: TextSink, recordText: string, inputText: string | null): void {
  if (inputText !== null) {
    sink.append('{"input":');
    sink.append(inputText);
    sink.append(',"record":');
  } else {
    sink.append('{"record":');
  }
  sink.append(recordText);
  sink.append("}\n");
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const HEX64 = /^[0-9a-f]{64}$/;
const POINTER = /^inputs\/([0-9a-f]{64})\.json$/;
const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const INPUT_KEY = ascii("input");
const RECORD_KEY = ascii("record");
const CORE_HASH_KEY = ascii("decision_core_hash");
const REPLAY_KEY = ascii("replay");
const POINTER_KEY = ascii("required_inputs_pointer");
const decoder = new TextDecoder();

class LineError extends Error {}

/** The end of the string whose opening quote is at `at` (just past its closing quote). */
function skipString(bytes: Uint8Array, at: number, end: number): number {
  let from = at + 1;
  for (;;) {
    const quote = bytes.indexOf(QUOTE, from);
    if (quote === -1 || quote >= end) throw new LineError("wal line has an unterminated string");
    let backslashes = 0;
    while (bytes[quote - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The end of the JSON value that starts at `at`. */
function skipValue(bytes: Uint8Array, at: number, end: number): number {
  const first = bytes[at];
  if (first === QUOTE) return skipString(bytes, at, end);
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    let depth = 0;
    for (let i = at; i < end;) {
      const byte = bytes[i];
      if (byte === QUOTE) {
        i = skipString(bytes, i, end);
        continue;
      }
      if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
      else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (--depth === 0) return i + 1;
      }
      i++;
    }
    throw new LineError("wal line has an unclosed object or array");
  }
  let i = at;
  while (i < end && bytes[i] !== COMMA && bytes[i] !== CLOSE_BRACE && bytes[i] !== CLOSE_BRACKET) i++;
  if (i === at) throw new LineError("wal line has a member without a value");
  return i;
}

function keyIs(bytes: Uint8Array, start: number, end: number, key: Uint8Array): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (bytes[start + i] !== key[i]) return false;
  return true;
}

/**
 * Calls `onMember(keyStart, keyEnd, valueStart, valueEnd)` for each member of the object `[at, end)`
 * (key offsets without their quotes); stops early when it returns true.
 */
function forEachMember(
  bytes: Uint8Array,
  at: number,
  end: number,
  onMember: (keyStart: number, keyEnd: number, valueStart: number, valueEnd: number) => boolean | void,
): void {
  if (bytes[at] !== OPEN_BRACE || bytes[end - 1] !== CLOSE_BRACE) throw new LineError("not a JSON object");
  let i = at + 1;
  if (i === end - 1) return;
  for (;;) {
    if (bytes[i] !== QUOTE) throw new LineError("object member without a key");
    const keyEnd = skipString(bytes, i, end);
    if (bytes[keyEnd] !== COLON) throw new LineError("object member without a colon");
    const valueEnd = skipValue(bytes, keyEnd + 1, end);
    if (onMember(i + 1, keyEnd - 1, keyEnd + 1, valueEnd) === true) return;
    if (valueEnd === end - 1) return;
    if (bytes[valueEnd] !== COMMA) throw new LineError("object members not separated by a comma");
    i = valueEnd + 1;
  }
}

/** The text of the string value `[start, end)` (with its quotes); its escapes are not undone. */
function stringValue(bytes: Uint8Array, start: number, end: number): string | null {
  if (bytes[start] !== QUOTE) return null;
  return decoder.decode(bytes.subarray(start + 1, end - 1));
}

/**
 * Finds the parts of the WAL line `bytes[start, end)` (without its newline). Throws an Error saying what
 * is wrong when the line is not framed as the format says or its record names no decision core hash.
 */
export function parseWalLine(bytes: Uint8Array, start: number, end: number): WalLineParts {
  const line: { input: [number, number] | null; record: [number, number] | null; members: number } = {
    input: null,
    record: null,
    members: 0,
  };
  try {
    forEachMember(bytes, start, end, (keyStart, keyEnd, valueStart, valueEnd) => {
      line.members++;
      if (line.members === 1 && keyIs(bytes, keyStart, keyEnd, INPUT_KEY)) {
        line.input = [valueStart, valueEnd];
      } else if (keyIs(bytes, keyStart, keyEnd, RECORD_KEY)) line.record = [valueStart, valueEnd];
      else throw new LineError("wal line is not a record line");
    });
  } catch (error) {
    if (error instanceof LineError) throw new Error(`wal line is not a record line: ${error.message}`);
    throw error;
  }
  const { input, record } = line;
  if (record === null || line.members !== (input === null ? 1 : 2)) {
    throw new Error("wal line is not a record line: it must hold a record, after an input or alone");
  }
  const named: { decisionCoreHash: string | null; inputHash: string | null } = {
    decisionCoreHash: null,
    inputHash: null,
  };
  try {
    forEachMember(bytes, record[0], record[1], (keyStart, keyEnd, valueStart, valueEnd) => {
      if (keyIs(bytes, keyStart, keyEnd, CORE_HASH_KEY)) {
        named.decisionCoreHash = stringValue(bytes, valueStart, valueEnd);
      } else if (keyIs(bytes, keyStart, keyEnd, REPLAY_KEY) && bytes[valueStart] === OPEN_BRACE) {
        forEachMember(bytes, valueStart, valueEnd, (pStart, pEnd, vStart, vEnd) => {
          if (!keyIs(bytes, pStart, pEnd, POINTER_KEY)) return false;
          named.inputHash = POINTER.exec(stringValue(bytes, vStart, vEnd) ?? "")?.[1] ?? null;
          return true;
        });
      }
    });
  } catch (error) {
    if (error instanceof LineError) throw new Error(`wal record is not a JSON object: ${error.message}`);
    throw error;
  }
  const { decisionCoreHash, inputHash } = named;
  if (decisionCoreHash === null || !HEX64.test(decisionCoreHash)) {
    throw new Error("wal record has no decision_core_hash");
  }
  return { input, record, decisionCoreHash, inputHash };
}
