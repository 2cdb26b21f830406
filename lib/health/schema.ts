import { z } from "zod";

/** Circuit-breaker settings for the local host, fed by failures and successes on the request path. */
export const circuitPolicySchema = z.strictObject({
  failure_threshold: z.number().int().min(1).default(3),
  cooldown_ms: z.number().int().min(0).default(5000),
  success_threshold: z.number().int().min(1).default(2),
});

/** The `health` section of the server policy: probe cadence, host pressure limits, circuit, heavy size. */
export const healthPolicySchema = z.strictObject({
  probe_interval_ms: z.number().int().min(1).default(2000),
  probe_timeout_ms: z.number().int().min(1).default(1000),
  memory_used_pct_max: z.number().min(0).max(100).default(95),
  swap_used_mb_max: z.number().min(0).default(2048),
  // prefault parses `{}` so the nested defaults apply when the whole block is omitted.
  circuit: circuitPolicySchema.prefault({}),
  heavy_param_threshold_b: z.number().positive().default(14),
});

/** Parsed health policy, every default applied. */
export type HealthPolicy = z.infer<typeof healthPolicySchema>;

/** Parsed circuit-breaker policy. */
export type CircuitPolicy = z.infer<typeof circuitPolicySchema>;
