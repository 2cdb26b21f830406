/** Waiting on a condition in the fleet tests: poll it with a deadline, never sleep a fixed time. */

/** Polls `condition` until it holds; throws naming `what` after `ms`. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
