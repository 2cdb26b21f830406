/** What the replay launcher needs: which artifacts folder, and which Deno permissions to grant. */
import { dirname, join, resolve } from "node:path";
import { ollamaNetEntry } from "../config/mod.ts";
import { artifactsDirOfEdr } from "./paths.ts";

/** Where the artifacts folder comes from. */
export interface ArtifactsDirSources {
  /** `--artifacts DIR`, which wins. */
  flag?: string;
  /** `HI_ARTIFACTS_DIR`, next. */
  env?: string;
  /** True when `target` is a folder to walk (`--all`) rather than one record. */
  tree?: boolean;
}

/**
 * Resolves the artifacts folder: `--artifacts`, else `HI_ARTIFACTS_DIR`, else the ancestor of the target
 * that holds it under `edr/` (for `--all`, also the target itself when it has an `edr/` folder).
 */
export async function resolveArtifactsDir(
  target: string,
  sources: ArtifactsDirSources,
): Promise<string | null> {
  if (sources.flag) return resolve(sources.flag);
  if (sources.env) return resolve(sources.env);
  if (sources.tree) {
    const abs = resolve(target);
    try {
      if ((await Deno.stat(join(abs, "edr"))).isDirectory) return abs;
    } catch {
      // not an artifacts folder itself; look at its ancestors
    }
    if (abs.endsWith("/edr")) return dirname(abs);
    return artifactsDirOfEdr(join(abs, "x.json"));
  }
  return artifactsDirOfEdr(target);
}

/** Inputs of `replayPermissionArgs`. */
export interface ReplayPermissionInputs {
  artifactsDir: string;
  /** The record or folder replayed (absolute), readable even when outside the artifacts folder. */
  target: string;
  /** The local Ollama base URL, or several separated by commas (each is granted). */
  ollamaUrl: string;
  allowNetwork: boolean;
  openaiBaseUrl?: string;
  anthropicBaseUrl?: string;
}

function hostPort(url: string): string {
  const u = new URL(url);
  const port = u.port !== "" ? u.port : u.protocol === "https:" ? "443" : "80";
  return `${u.hostname}:${port}`;
}

/**
 * The Deno permission flags of the sandboxed replay: read the artifacts folder (and the target), write
 * only `<artifacts>/replay`, reach only the local Ollama host(s), plus the cloud API hosts with
 * `--allow-network` (replay itself never calls them; the grant mirrors the router's own).
 */
export function replayPermissionArgs(inputs: ReplayPermissionInputs): string[] {
  const artifacts = resolve(inputs.artifactsDir);
  const hosts = inputs.ollamaUrl.split(",").map(ollamaNetEntry);
  if (inputs.allowNetwork) {
    hosts.push(hostPort(inputs.openaiBaseUrl || "https://api.openai.com/v1"));
    hosts.push(hostPort(inputs.anthropicBaseUrl || "https://api.anthropic.com"));
  }
  const reads = [artifacts];
  if (!resolve(inputs.target).startsWith(artifacts + "/")) reads.push(resolve(inputs.target));
  return [
    `--allow-read=${reads.join(",")}`,
    `--allow-write=${join(artifacts, "replay")}`,
    `--allow-net=${[...new Set(hosts)].join(",")}`,
    "--allow-env=OLLAMA_HOST",
  ];
}
