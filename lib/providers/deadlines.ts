/**
 * Many deadlines on one timer. Every upstream call has a first-byte and a total deadline, and almost all
 * of them are cancelled long before they fire; one `setTimeout` + `clearTimeout` pair per deadline cost
 * more CPU than the rest of the call's bookkeeping. Here a deadline is a set entry, and the one timer is
 * armed for the earliest deadline only (calls with equal timeouts are added in deadline order, so it is
 * rarely re-armed). It keeps the process alive only while some deadline asks to (`keepAlive`), and it is
 * cleared as soon as no deadline is left.
 */

/** A pending deadline; `cancel()` is idempotent. */
export interface Deadline {
  cancel(): void;
}

interface Entry extends Deadline {
  at: number;
  fire: () => void;
  keepAlive: boolean;
}

class DeadlineTimer {
  #entries = new Set<Entry>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #armedAt = Infinity;
  #keepingAlive = 0;

  add(delayMs: number, fire: () => void, keepAlive: boolean): Deadline {
    const entry: Entry = {
      at: performance.now() + delayMs,
      fire,
      keepAlive,
      cancel: () => this.#remove(entry),
    };
    this.#entries.add(entry);
    if (keepAlive) this.#keepingAlive++;
    if (entry.at < this.#armedAt) this.#arm(entry.at);
    else if (keepAlive && this.#keepingAlive === 1) Deno.refTimer(this.#timer!);
    return entry;
  }

  #remove(entry: Entry): void {
    if (!this.#entries.delete(entry)) return;
    if (entry.keepAlive && --this.#keepingAlive === 0 && this.#timer !== null) Deno.unrefTimer(this.#timer);
    // Nothing left to wait for: no timer may outlive the calls.
    if (this.#entries.size === 0) this.#disarm();
  }

  #arm(at: number): void {
    this.#disarm();
    this.#armedAt = at;
    const timer = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
    if (this.#keepingAlive === 0) Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #disarm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#armedAt = Infinity;
  }

  #expire(): void {
    this.#timer = null;
    this.#armedAt = Infinity;
    const now = performance.now();
    const due: Entry[] = [];
    let next = Infinity;
    for (const entry of this.#entries) {
      if (entry.at <= now) due.push(entry);
      else if (entry.at < next) next = entry.at;
    }
    for (const entry of due) {
      this.#entries.delete(entry);
      if (entry.keepAlive) this.#keepingAlive--;
    }
    if (next !== Infinity) this.#arm(next);
    for (const entry of due) entry.fire();
  }
}

const shared = new DeadlineTimer();

/**
 * Calls `fire` once `delayMs` from now unless cancelled first. With `keepAlive` false the deadline alone
 * does not keep the process running (like an unreferenced timer).
 */
export function deadlineAfter(delayMs: number, fire: () => void, { keepAlive = true } = {}): Deadline {
  return shared.add(delayMs, fire, keepAlive);
}
