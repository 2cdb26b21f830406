/**
 * The single heavy local inference slot: one holder, a bounded FIFO wait queue, release on every exit.
 * @module
 */
export { type SlotPolicy, slotPolicySchema } from "./schema.ts";
export {
  type AcquireOptions,
  HeavySlot,
  type HeavySlotOptions,
  SlotError,
  type SlotErrorCode,
  type SlotLease,
  type SlotSnapshot,
  type SlotStats,
} from "./heavy_slot.ts";
