/** Validation of records against the published EDR_v1.0.0 JSON Schema (compiled once per process). */

import { Ajv2020, type ValidateFunction } from "ajv/dist/2020";
import edrSchema from "../../schemas/edr/EDR_v1.0.0.json" with { type: "json" };

/** The EDR_v1.0.0 JSON Schema document, as published in `schemas/edr/`. */
export const EDR_SCHEMA: Readonly<Record<string, unknown>> = edrSchema;

/** Result of `validateEdr`: valid, or the list of problems as `<json pointer> <message>` lines. */
export type EdrValidationResult = { valid: true } | { valid: false; errors: string[] };

// Compiled on first use: the router writes with validation off, so its start-up skips this. Strict mode
// stays on so a schema typo fails the schema tests; union types are deliberate (`["string","null"]`).
let compiledValidator: ValidateFunction | null = null;

function compiled(): ValidateFunction {
  compiledValidator ??= new Ajv2020({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    validateFormats: false,
  })
    .compile(edrSchema);
  return compiledValidator;
}

/** Checks a value against EDR_v1.0.0; the errors name the offending path. */
export function validateEdr(record: unknown): EdrValidationResult {
  const validate = compiled();
  if (validate(record)) return { valid: true };
  const errors = (validate.errors ?? []).map((e) => {
    const where = e.instancePath === "" ? "/" : e.instancePath;
    const extra = e.keyword === "additionalProperties"
      ? ` (${(e.params as { additionalProperty?: string }).additionalProperty})`
      : "";
    return `${where} ${e.message ?? e.keyword}${extra}`;
  });
  return { valid: false, errors };
}
