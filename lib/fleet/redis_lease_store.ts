/**
 * Single-use leases shared by every router replica: one `SET hi:lease:<sha256(lease_id)> 1 NX PX <ms>`
 * per reservation, so of any number of replicas racing one lease id exactly one gets "OK". The raw id
 * never reaches Redis. A reservation that cannot reach Redis fails closed (`LeaseStoreUnavailableError`).
 */
import { hashLeaseId, type LeaseReserver, LeaseStoreUnavailableError } from "../authority/mod.ts";
import type { RedisConnection } from "./redis_connection.ts";

/** The key prefix of lease reservations. */
export const LEASE_KEY_PREFIX = "hi:lease:";

/** The Redis lease store: one round trip per reservation. */
export class RedisLeaseReserver implements LeaseReserver {
  #redis: RedisConnection;

  /** Uses an open connection (closed by its owner). */
  constructor(redis: RedisConnection) {
    this.#redis = redis;
  }

  /** Reserves `leaseId` until `expiresAtMs`: "reserved" for exactly one caller across the fleet. */
  async reserve(leaseId: string, expiresAtMs: number, nowMs: number): Promise<"reserved" | "replay"> {
    if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0) {
      throw new RangeError("expiresAtMs must be a non-negative integer of milliseconds");
    }
    // Redis counts the lifetime on its own clock, from now; at least 1 ms (PX 0 is an error).
    const lifetimeMs = Math.max(1, Math.ceil(expiresAtMs - nowMs));
    let reply;
    try {
      reply = await this.#redis.command([
        "SET",
        `${LEASE_KEY_PREFIX}${hashLeaseId(leaseId)}`,
        String(expiresAtMs),
        "NX",
        "PX",
        String(lifetimeMs),
      ]);
    } catch (error) {
      throw new LeaseStoreUnavailableError(
        `the lease store (Redis at ${this.#redis.target.display}) could not be reached`,
        { cause: error },
      );
    }
    return reply === "OK" ? "reserved" : "replay";
  }
}
