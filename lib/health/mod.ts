/**
 * Local health gate: Ollama probes, host memory/swap pressure and a circuit breaker, read synchronously
 * on the request path through `HealthGate.snapshot()`.
 * @module
 */
export { type CircuitPolicy, circuitPolicySchema, type HealthPolicy, healthPolicySchema } from "./schema.ts";
export { normalizeModelName, parseParameterSize } from "./parameter_size.ts";
export {
  type CircuitState,
  type FailureKind,
  HealthGate,
  type HealthGateOptions,
  type HealthReason,
  type HealthSnapshot,
  type HealthState,
  type InstalledModel,
  type MemoryReading,
} from "./gate.ts";
