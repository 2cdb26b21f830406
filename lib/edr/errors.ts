/** The EDR writer's errors, its log event, and the remedy it names for a file-system error. */

/** A record could not be made durable (disk full, permissions, I/O error); the request should fail closed. */
export class EdrWriteError extends Error {
  /** Builds the error; `cause` carries the underlying I/O error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EdrWriteError";
  }
}

/** The writer is degraded (the disk failed and is not repaired yet): the commit was refused at once. */
export class EdrUnavailableError extends EdrWriteError {
  /** Builds the error from the reason the writer is degraded. */
  constructor(reason: string) {
    super(
      `the edr write-ahead log cannot be written now (${reason}); the router retries by itself, retry later`,
    );
    this.name = "EdrUnavailableError";
  }
}

/** A draft did not produce a valid EDR_v1.0.0 record; nothing was written and no sequence was used. */
export class EdrValidationError extends EdrWriteError {
  /** Schema problems as `<json pointer> <message>` lines. */
  readonly errors: string[];

  /** Builds the error from the validator's messages. */
  constructor(message: string, errors: string[]) {
    super(message);
    this.name = "EdrValidationError";
    this.errors = errors;
  }
}

/** A structured log event from the writer (reasons and paths only, never record bodies or prompts). */
export type EdrLogEvent = { level: "warn" | "error"; msg: string } & Record<string, unknown>;

/** Where the writer's events go unless its options say otherwise: one JSON line on stderr. */
export function defaultLog(event: EdrLogEvent): void {
  console.error(JSON.stringify({ component: "edr", ...event }));
}

/** An error's name and message (or the value as text), for logs and error messages. */
export function reasonOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** What to do about a file-system error under `dir`, by its kind (a message says its cause first). */
export function remedyFor(error: unknown, dir: string): string {
  const text = reasonOf(error);
  if (/NotCapable|Requires (read|write) access/.test(text)) {
    return `the process lacks a Deno permission for it; start the router with deno task serve, which grants ${dir}`;
  }
  if (/os error 28|No space left/i.test(text)) return `free space on the file system that holds ${dir}`;
  if (/os error 30|Read-only file system/i.test(text)) return `remount the file system of ${dir} read-write`;
  if (/os error 1[^0-9]|os error 13|Permission denied|PermissionDenied|Operation not permitted/i.test(text)) {
    return `make ${dir} and everything in it writable by this user (check chattr +i as well)`;
  }
  if (/os error 5[^0-9]|Input\/output error/i.test(text)) {
    return `check the disk that holds ${dir} (it reported an I/O error)`;
  }
  return `check ${dir} and the disk that holds it`;
}
