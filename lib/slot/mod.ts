/**
 * The heavy local inference slot (one per local host): one holder, a bounded FIFO wait queue, release on every exit.
 * @module
 */
export { type SlotPolicy, slotPolicySchema } from "./schema.ts";
export {
  type AcquireOptions,
  GrantedLease,
  HeavySlot,
  type HeavySlotOptions,
  type HostSlot,
  inProcessSlots,
  SlotError,
  type SlotErrorCode,
  type SlotFactory,
  type SlotLease,
  type SlotSnapshot,
  type SlotStats,
} from "./heavy_slot.ts";
