/**
 * Fleet mode's Redis store (`HI_REDIS_URL`): single-use leases and the heavy slot of each Ollama host,
 * shared by every router replica using it. Without Redis the router keeps the file lease store and the
 * in-process slots. This file is the store's only door (as pg.ts is PostgreSQL's); see docs/fleet.md.
 * @module
 */
import { HeavySlot, type HostSlot, type SlotPolicy } from "../slot/mod.ts";
import type { RedisConnection } from "./redis_connection.ts";
import { RedisHeavySlot, type RedisSlotOptions } from "./redis_slot.ts";

export {
  parseRedisUrl,
  REDIS_CLIENT_ENV_NAMES,
  REDIS_COMMAND_TIMEOUT_MS,
  RedisConnection,
  type RedisTarget,
} from "./redis_connection.ts";
export { LEASE_KEY_PREFIX, RedisLeaseReserver } from "./redis_lease_store.ts";
export {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_HOLD_MS,
  DEFAULT_POLL_MS,
  RedisHeavySlot,
  type RedisSlotOptions,
} from "./redis_slot.ts";

/** Where a host's heavy slot lives: in this process, or in Redis shared by every replica. */
export interface HeavySlotStores {
  /** A connected Redis: the slot is shared by every replica using it for the same host URL. */
  redis?: RedisConnection | null;
  /** Options for the shared slot (tests shorten the hold lease). */
  shared?: RedisSlotOptions;
}

/** The heavy slot of the Ollama host at `hostUrl`: shared through Redis when given, in-process otherwise. */
export async function createHeavySlot(
  hostUrl: string,
  policy: SlotPolicy,
  stores: HeavySlotStores = {},
): Promise<HostSlot> {
  if (!stores.redis) return new HeavySlot(policy);
  return await RedisHeavySlot.open(stores.redis, hostUrl, policy, stores.shared);
}
