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
  slotAbortedError,
  SlotError,
  type SlotErrorCode,
  type SlotFactory,
  type SlotLease,
  slotQueueFullError,
  type SlotSnapshot,
  type SlotStats,
  slotWaitTimeoutError,
  waitTimerMs,
} from "./heavy_slot.ts";
