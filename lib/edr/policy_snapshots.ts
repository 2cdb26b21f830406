/**
 * The policy snapshot store: the canonical policy kept durably at `policies/<policy_hash>.json`, so a
 * record's `policy_hash` always names a file replay can read. Each store remembers what it has written.
 */

import { AtomicFiles, syncDir } from "./atomic_file.ts";
import { canonicalJson, sha256Hex } from "./canonical.ts";
import { EdrWriteError, reasonOf, remedyFor } from "./errors.ts";

/** The snapshots under one artifacts directory. */
export class PolicySnapshots {
  readonly #artifactsDir: string;
  readonly #dir: string;
  readonly #files = new AtomicFiles("p");
  /** Hashes this store has written or found in place, so a policy is stored once per store. */
  readonly #stored = new Set<string>();

  /** The store of `artifactsDir` (its `policies/` folder is made on the first write). */
  constructor(artifactsDir: string) {
    this.#artifactsDir = artifactsDir;
    this.#dir = `${artifactsDir.replace(/\/+$/, "") || "/"}/policies`;
  }

  /** Stores the canonical policy durably (once per store) and returns its hash. */
  async write(policy: unknown): Promise<string> {
    const text = canonicalJson(policy);
    const hash = sha256Hex(text);
    if (this.#stored.has(hash)) return hash;
    const path = `${this.#dir}/${hash}.json`;
    try {
      await Deno.mkdir(this.#dir, { recursive: true });
      let present = false;
      try {
        present = (await Deno.readTextFile(path)) === text;
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      if (!present) {
        // A file under this name with other bytes is damaged: the name is the hash of the right bytes.
        await Deno.remove(path).catch(() => {});
        this.#files.create(this.#dir, path, text, { durable: true });
        await syncDir(this.#dir);
      }
    } catch (error) {
      throw new EdrWriteError(
        `cannot store policy snapshot ${path} (${reasonOf(error)}); ${remedyFor(error, this.#artifactsDir)}`,
        { cause: error },
      );
    }
    this.#stored.add(hash);
    return hash;
  }
}

/** Stores the canonical policy durably at `policies/<policy_hash>.json` and returns the hash. */
export function writePolicySnapshot(artifactsDir: string, policy: unknown): Promise<string> {
  return new PolicySnapshots(artifactsDir).write(policy);
}
