/**
 * Path rules for replay: where the artifacts folder is, where a report goes, and whether a pointer
 * stored inside a record stays inside the artifacts folder (records are untrusted input).
 */
import { basename, dirname, isAbsolute, join, normalize, relative, resolve, sep } from "node:path";

/** The UTC `YYYY/MM/DD` folder of an ISO timestamp, or null when it is not a valid timestamp. */
export function dayPathOf(timestamp: string): string | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})T/.exec(timestamp);
  if (match === null || Number.isNaN(Date.parse(timestamp))) return null;
  const date = new Date(timestamp);
  const yyyy = String(date.getUTCFullYear()).padStart(4, "0");
  const mm = String(date.getUTCMonth() + 1).padStart(2, "0");
  const dd = String(date.getUTCDate()).padStart(2, "0");
  return `${yyyy}/${mm}/${dd}`;
}

/** Where the replay report of a record goes: `<artifacts>/replay/YYYY/MM/DD/<decision_core_hash>.json`. */
export function reportPathOf(
  artifactsDir: string,
  record: { timestamp: string; decision_core_hash: string },
): string | null {
  const day = dayPathOf(record.timestamp);
  // The hash becomes a file name: anything but 64 hex would let a record pick where we write.
  if (day === null || !/^[0-9a-f]{64}$/.test(record.decision_core_hash)) return null;
  return join(artifactsDir, "replay", ...day.split("/"), `${record.decision_core_hash}.json`);
}

/** True when `child` is `parent` or lies beneath it (both absolute, normalised). */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** The outcome of resolving a pointer stored in a record. */
export type PointerResolution =
  | { ok: true; path: string }
  | { ok: false; reason: string };

/**
 * Resolves a record's relative pointer inside the artifacts folder. Refuses absolute pointers, `..`
 * escapes and symlinks whose target lies outside; the file must exist.
 */
export async function resolvePointer(artifactsDir: string, pointer: unknown): Promise<PointerResolution> {
  if (typeof pointer !== "string" || pointer === "") return { ok: false, reason: "no pointer recorded" };
  if (isAbsolute(pointer) || /^[a-zA-Z]:[\\/]/.test(pointer) || pointer.startsWith("\\")) {
    return { ok: false, reason: "pointer is absolute" };
  }
  if (pointer.includes("\0")) return { ok: false, reason: "pointer contains a NUL byte" };
  const root = resolve(artifactsDir);
  const joined = resolve(root, normalize(pointer));
  if (!isInside(root, joined) || joined === root) {
    return { ok: false, reason: "pointer leaves the artifacts folder" };
  }
  let realRoot: string;
  let realTarget: string;
  try {
    realRoot = await Deno.realPath(root);
  } catch {
    return { ok: false, reason: "artifacts folder does not exist" };
  }
  try {
    realTarget = await Deno.realPath(joined);
  } catch {
    return { ok: false, reason: "pointed-to file does not exist" };
  }
  if (!isInside(realRoot, realTarget)) {
    return { ok: false, reason: "pointer resolves (through a symlink) outside the artifacts folder" };
  }
  return { ok: true, path: realTarget };
}

/**
 * Where a file the replay reads really is: its real path (through every symlink) when that lies inside the
 * artifacts folder's real path `realRoot`, else why not. The file must exist.
 */
export async function confinedRealPath(realRoot: string, path: string): Promise<PointerResolution> {
  let real: string;
  try {
    real = await Deno.realPath(path);
  } catch (error) {
    return {
      ok: false,
      reason: error instanceof Deno.errors.NotFound ? "file does not exist" : "file cannot be read",
    };
  }
  if (!isInside(realRoot, real)) {
    return { ok: false, reason: "file resolves (through a symlink) outside the artifacts folder" };
  }
  return { ok: true, path: real };
}

/**
 * Null when a report written to `reportPath` (built on the real artifacts folder `realRoot`) would really
 * land inside `<realRoot>/replay`, else why not. Creates nothing: the deepest folder of the report's path
 * that already exists must resolve inside `replay/` (or be the artifacts folder itself, before the first
 * report), so a `replay/` that is a symlink to elsewhere is refused before anything runs.
 */
export async function reportFolderProblem(realRoot: string, reportPath: string): Promise<string | null> {
  const replayRoot = join(realRoot, "replay");
  let dir = dirname(reportPath);
  for (;;) {
    let exists = true;
    try {
      await Deno.lstat(dir);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) return `${shown(realRoot, dir)} cannot be inspected`;
      exists = false;
    }
    if (exists) {
      let real: string;
      try {
        real = await Deno.realPath(dir);
      } catch {
        return `${shown(realRoot, dir)} is a broken symlink`;
      }
      if (dir === realRoot || isInside(replayRoot, real)) return null;
      return `${shown(realRoot, dir)} leads (through a symlink) to ${real}, outside ${
        shown(realRoot, replayRoot)
      }`;
    }
    const parent = dirname(dir);
    if (parent === dir || !isInside(realRoot, parent)) return "the report path leaves the artifacts folder";
    dir = parent;
  }
}

/**
 * Makes the report's folder and returns the report's real path, refusing (by throwing) when the folder
 * does not really lie inside `<realRoot>/replay`; the report is then written only through real paths.
 */
export async function placeReport(realRoot: string, reportPath: string): Promise<string> {
  const before = await reportFolderProblem(realRoot, reportPath);
  if (before !== null) throw new Error(`${before}; make ${join(realRoot, "replay")} a real folder`);
  await Deno.mkdir(dirname(reportPath), { recursive: true });
  const realDir = await Deno.realPath(dirname(reportPath));
  if (!isInside(join(realRoot, "replay"), realDir)) {
    throw new Error(`the report folder moved outside ${join(realRoot, "replay")}; make it a real folder`);
  }
  return join(realDir, basename(reportPath));
}

function shown(realRoot: string, path: string): string {
  return isInside(realRoot, path) ? `<artifacts>/${relative(realRoot, path)}` : path;
}

/**
 * The artifacts folder holding an EDR file: the nearest ancestor that has the file under its `edr/`
 * folder, or null when the file is not inside any `edr/` folder.
 */
export function artifactsDirOfEdr(edrPath: string): string | null {
  let dir = dirname(resolve(edrPath));
  while (true) {
    if (dir.split(sep).pop() === "edr") return dirname(dir);
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}
