/**
 * The policy snapshot store: the canonical policy kept durably at `policies/<policy_hash>.json`, so a
 * record's `policy_hash` always names a file replay can read.
 */

import { AtomicFiles, syncDir } from "./atomic_file.ts";
import { canonicalJson, sha256Hex } from "./canonical.ts";
import { EdrWriteError, reasonOf, remedyFor } from "./errors.ts";

/**
 * Stores the canonical policy durably at `policies/<policy_hash>.json` and returns the hash. A file already
 * there with the same bytes is kept; the server calls this once, at start.
 */
export async function writePolicySnapshot(artifactsDir: string, policy: unknown): Promise<string> {
  const text = canonicalJson(policy);
  const hash = sha256Hex(text);
  const dir = `${artifactsDir.replace(/\/+$/, "") || "/"}/policies`;
  const path = `${dir}/${hash}.json`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    let present = false;
    try {
      present = (await Deno.readTextFile(path)) === text;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (!present) {
      // A file under this name with other bytes is damaged: the name is the hash of the right bytes.
      await Deno.remove(path).catch(() => {});
      new AtomicFiles("p").create(dir, path, text, { durable: true });
      await syncDir(dir);
    }
  } catch (error) {
    throw new EdrWriteError(
      `cannot store policy snapshot ${path} (${reasonOf(error)}); ${remedyFor(error, artifactsDir)}`,
      { cause: error },
    );
  }
  return hash;
}
