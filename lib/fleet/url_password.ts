/**
 * Keeping a connection URL's password out of error text: the PostgreSQL and Redis clients may repeat the
 * URL, or the password alone, in their error messages, and those messages reach logs.
 */

/** `text` with the password of `url` (if it has one) replaced by `***`. */
export function withoutUrlPassword(text: string, url: string): string {
  const password = urlPassword(url);
  return password ? text.replaceAll(password, "***") : text;
}

/** The decoded password of `url`; "" when it has none or cannot be parsed. */
function urlPassword(url: string): string {
  try {
    const parsed = new URL(url);
    return parsed.password ? decodeURIComponent(parsed.password) : "";
  } catch {
    return "";
  }
}
