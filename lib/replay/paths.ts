/**
 * Path rules for replay: where the artifacts folder is, where a report goes, and whether a pointer
 * stored inside a record stays inside the artifacts folder (records are untrusted input).
 */
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from "node:path";

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
