import { z } from "zod";

/** The `slot` section of the server policy: what a heavy request does while the local slot is taken. */
export const slotPolicySchema = z.strictObject({
  when_busy: z.enum(["wait", "spill", "refuse"]).default("wait"),
  max_queue: z.number().int().min(0).default(8),
  max_wait_ms: z.number().int().min(0).default(30000),
  retry_after_s: z.number().int().min(0).default(5),
});

/** Parsed slot policy, every default applied. */
export type SlotPolicy = z.infer<typeof slotPolicySchema>;
