/** Server-sent events as the router writes them to its clients. */

/** Encodes one SSE event (`event:` line when named, one `data:` line per payload line, blank line). */
export function encodeSseEvent(data: string, event?: string): string {
  const head = event === undefined ? "" : `event: ${event}\n`;
  return `${head}${data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join("")}\n`;
}
