/**
 * Creating a file so that readers see either nothing or the whole file: the content goes to a temp name
 * on the same file system and is hard-linked into place, so an existing file is never replaced unless the
 * caller says so. Used by the writer (day markers, policy snapshots) and by the materializer worker
 * (record files, captured inputs). No dependencies, so the worker loads nothing else for it.
 */

const encoder = new TextEncoder();

/** How `AtomicFiles.create` writes: `durable` syncs the data first; `replace` renames over a file in place. */
export interface AtomicCreateOptions {
  durable?: boolean;
  replace?: boolean;
}

/** Creates files atomically; each instance names its temp files apart from every other's. */
export class AtomicFiles {
  readonly #prefix: string;
  #counter = 0;

  /** `tag` tells whose temp files they are when a crash leaves one behind (open() empties tmp/). */
  constructor(tag = "") {
    this.#prefix = `${Deno.pid}-${tag}${crypto.randomUUID().slice(0, 8)}-`;
  }

  /**
   * Creates `path` with `content` through a temp file in `tmpDir`; true when it wrote. Without `replace`
   * a file already at `path` is kept and false returned; with it the file is replaced by a rename.
   */
  create(
    tmpDir: string,
    path: string,
    content: string | Uint8Array,
    options: AtomicCreateOptions = {},
  ): boolean {
    const tmp = `${tmpDir}/${this.#prefix}${++this.#counter}.part`;
    const bytes = typeof content === "string" ? encoder.encode(content) : content;
    try {
      if (options.durable) {
        const file = Deno.openSync(tmp, { write: true, createNew: true });
        try {
          for (let offset = 0; offset < bytes.length;) offset += file.writeSync(bytes.subarray(offset));
          file.syncDataSync();
        } finally {
          file.close();
        }
      } else {
        Deno.writeFileSync(tmp, bytes, { createNew: true });
      }
      if (options.replace) {
        Deno.renameSync(tmp, path);
        return true;
      }
      return linkInPlace(tmp, path);
    } finally {
      try {
        Deno.removeSync(tmp);
      } catch { /* renamed away or never made */ }
    }
  }
}

/** `Deno.lstatSync(path)`, or null when nothing is there. */
export function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Hard-links `tmp` to `path` unless `path` exists; true when it made the link. */
function linkInPlace(tmp: string, path: string): boolean {
  try {
    Deno.linkSync(tmp, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // Some file systems refuse hard links; a checked rename is the next best thing.
    if (lstatOrNull(path) !== null) return false;
    Deno.renameSync(tmp, path);
    return true;
  }
}

/** Makes a directory's entries durable (a file created or renamed in it survives a power loss). */
export async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}
