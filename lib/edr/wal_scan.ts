/** Reading a write-ahead log line by line without holding it in memory whole (used by recovery). */

import { concatBytes } from "../bytes.ts";

/** Recovery reads a WAL in blocks of this size, so a large log never sits in memory whole. */
const WAL_SCAN_BLOCK_BYTES = 4 * 1024 * 1024;

/**
 * Reads a WAL in blocks and calls `onLine` with each complete line (without its newline) and its offset.
 * The log ends at its first NUL byte (zeros written ahead of it, see `WalLog`; no line holds one).
 * `linesEnd` is where the last complete line ends, `logEnd` where the log ends (past a torn last line).
 */
export async function scanWalLines(
  path: string,
  onLine: (line: Uint8Array, start: number) => void,
  blockBytes = WAL_SCAN_BLOCK_BYTES,
): Promise<{ linesEnd: number; logEnd: number; fileSize: number }> {
  const file = await Deno.open(path, { read: true });
  try {
    const fileSize = (await file.stat()).size;
    const block = new Uint8Array(blockBytes);
    let carry = new Uint8Array(0);
    let linesEnd = 0;
    for (;;) {
      const read = await file.read(block);
      if (read === null) break;
      let data = carry.length === 0 ? block.subarray(0, read) : concatBytes([carry, block.subarray(0, read)]);
      const nul = data.indexOf(0);
      if (nul !== -1) data = data.subarray(0, nul);
      let from = 0;
      for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, from)) {
        onLine(data.subarray(from, newline), linesEnd);
        linesEnd += newline - from + 1;
        from = newline + 1;
      }
      carry = data.slice(from);
      if (nul !== -1) break;
    }
    return { linesEnd, logEnd: linesEnd + carry.length, fileSize };
  } finally {
    file.close();
  }
}
