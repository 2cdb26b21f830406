/**
 * Captured inputs: a request's input in RFC 8785 form, stored once at `inputs/<sha256>.json` and pointed to
 * by `replay.required_inputs_pointer`. The WAL carries an input with the first line that needs it; later
 * lines for the same input leave it out.
 */

import { canonicalJson, sha256Hex } from "./canonical.ts";
import { inputPointerOf } from "./paths.ts";
import type { EdrDraft } from "./types.ts";

/** A captured input's canonical text and its SHA-256. */
export interface CanonicalInput {
  text: string;
  hash: string;
}

/** Bounded: forgetting only means a later line repeats an input the WAL already has. */
const MAX_REMEMBERED_INPUTS = 100_000;

/**
 * The draft with its input pointer set, and the input to log; `canonical` (already hashed by the caller)
 * wins over `value`. A draft with neither comes back as it is.
 */
export function captureInput(
  draft: EdrDraft,
  value: unknown,
  canonical: CanonicalInput | undefined,
): { draft: EdrDraft; input: CanonicalInput | null } {
  let input: CanonicalInput | null = null;
  if (canonical !== undefined) {
    input = canonical;
  } else if (value !== undefined) {
    const text = canonicalJson(value);
    input = { text, hash: sha256Hex(text) };
  }
  if (input === null) return { draft, input };
  return {
    draft: { ...draft, replay: { ...draft.replay, required_inputs_pointer: inputPointerOf(input.hash) } },
    input,
  };
}

/** The inputs some WAL line already carries (so later lines for the same input leave it out). */
export class LoggedInputs {
  #hashes = new Set<string>();

  /** True the first time `hash` is seen (its line must carry the input); remembers it. */
  firstTime(hash: string): boolean {
    if (this.#hashes.has(hash)) return false;
    this.remember(hash);
    return true;
  }

  /** Notes that a WAL line carries the input `hash`. */
  remember(hash: string): void {
    if (this.#hashes.size >= MAX_REMEMBERED_INPUTS) this.#hashes.clear();
    this.#hashes.add(hash);
  }

  /** Forgets every input (after a failed batch whose lines may have counted some); only repeats some later. */
  forget(): void {
    this.#hashes.clear();
  }
}
