/** The per-call options and failure check the provider adapter tests share. */
import assert from "node:assert/strict";
import { type CallOptions, UpstreamError } from "../../lib/providers/types.ts";

/** A maker of call options for `model` with roomy deadlines; each call gets a fresh, unaborted signal. */
export function callOptionsFor(
  model: string,
  defaultMaxTokens = 1024,
): (over?: Partial<CallOptions>) => CallOptions {
  return (over = {}) => ({
    model,
    signal: new AbortController().signal,
    firstByteTimeoutMs: 10_000,
    totalTimeoutMs: 30_000,
    defaultMaxTokens,
    ...over,
  });
}

/** The `UpstreamError` `promise` rejects with, checked to carry `code`. */
export async function rejectsWith(promise: Promise<unknown>, code: string): Promise<UpstreamError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof UpstreamError, `expected UpstreamError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}
