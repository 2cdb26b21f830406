/**
 * The replica id: which router's chains a shipped record belongs to. `HI_REPLICA_ID` when set, otherwise an
 * id generated once and kept in `<artifacts>/replica_id`, so a restarted router keeps its id. Each replica
 * must have its own artifacts folder: the chains are per day per artifacts folder, and the database keys
 * them by (replica id, day).
 */

const REPLICA_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Checks an operator-given replica id; the error says which characters are allowed. */
export function checkReplicaId(id: string): string {
  if (!REPLICA_ID.test(id)) {
    throw new Error(
      `HI_REPLICA_ID must be 1 to 64 letters, digits, dots, dashes or underscores, not ${JSON.stringify(id)}`,
    );
  }
  return id;
}

/** The replica id: `configured` when given, else the one stored in the artifacts folder (made on first use). */
export async function replicaIdFor(artifactsDir: string, configured: string | undefined): Promise<string> {
  if (configured !== undefined && configured.trim() !== "") return checkReplicaId(configured.trim());
  const path = `${artifactsDir.replace(/\/+$/, "") || "/"}/replica_id`;
  try {
    const stored = (await Deno.readTextFile(path)).trim();
    if (REPLICA_ID.test(stored)) return stored;
    throw new Error(`${path} does not hold a replica id; delete it to make a new one, or set HI_REPLICA_ID`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const id = `r-${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const file = await Deno.open(path, { write: true, createNew: true }).catch((error) => {
    if (error instanceof Deno.errors.AlreadyExists) return null;
    throw error;
  });
  if (file === null) return (await Deno.readTextFile(path)).trim();
  try {
    await file.write(new TextEncoder().encode(`${id}\n`));
    await file.sync();
  } finally {
    file.close();
  }
  return id;
}
