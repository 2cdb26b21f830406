/** The routing contract, the server policy and the pure routing decision. */
export {
  type Capability,
  type Classification,
  classificationSchema,
  type EffectiveContract,
  type RoutingContract,
  routingContractSchema,
} from "./routing_contract.ts";
export {
  BUILTIN_POLICY_SOURCE,
  type CloudKeys,
  loadPolicy,
  type ModelPolicy,
  overlayBuiltinPolicy,
  parsePolicy,
  type Policy,
  policyJsonSchema,
  policySchema,
  policyServingProblem,
} from "./policy.ts";
export { effectiveContract } from "./effective.ts";
export { decide } from "./decide.ts";
export {
  type Candidate,
  type Decision,
  type DecisionInput,
  FIELD_PROVIDERS,
  type HealthView,
  type LocalHostView,
  type Rejection,
  type RequestFeatures,
  SLOT_DISPOSITION,
  type SlotDisposition,
  type SlotView,
} from "./decision_types.ts";
