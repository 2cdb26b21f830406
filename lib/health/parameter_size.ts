const FACTORS: Record<string, number> = { K: 1e-6, M: 1e-3, B: 1, T: 1e3 };
const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*$/i;

/** Parses Ollama's `details.parameter_size` ("567M", "8.2B", "32.8B") into billions, or null. */
export function parseParameterSize(value: unknown): number | null {
  if (typeof value !== "string") return null;
  const match = PATTERN.exec(value);
  if (!match) return null;
  const amount = Number(match[1]);
  const unit = match[2].toUpperCase();
  // Divide for the small units so "567M" is exactly 0.567 rather than 567 * 0.001.
  const billions = unit === "K" ? amount / 1e6 : unit === "M" ? amount / 1e3 : amount * FACTORS[unit];
  return Number.isFinite(billions) ? billions : null;
}

/** Ollama treats a bare name as its `:latest` tag; normalising lets "qwen3" and "qwen3:latest" match. */
export function normalizeModelName(name: string): string {
  const tail = name.slice(name.lastIndexOf("/") + 1);
  return tail.includes(":") ? name : `${name}:latest`;
}
