/** Validation of records against the published EDR_v1.0.0 JSON Schema (compiled once per process). */

import { Ajv2020 } from "ajv/dist/2020";
import edrSchema from "../../schemas/edr/EDR_v1.0.0.json" with { type: "json" };

/** The EDR_v1.0.0 JSON Schema document, as published in `schemas/edr/`. */
export const EDR_SCHEMA: Readonly<Record<string, unknown>> = edrSchema;

/** Result of `validateEdr`: valid, or the list of problems as `<json pointer> <message>` lines. */
export type EdrValidationResult = { valid: true } | { valid: false; errors: string[] };

// Strict mode stays on so a schema typo fails at startup; union types are deliberate (`["string","null"]`).
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, validateFormats: false });
const compiled = ajv.compile(edrSchema);

/** Checks a value against EDR_v1.0.0; the errors name the offending path. */
export function validateEdr(record: unknown): EdrValidationResult {
  if (compiled(record)) return { valid: true };
  const errors = (compiled.errors ?? []).map((e) => {
    const where = e.instancePath === "" ? "/" : e.instancePath;
    const extra = e.keyword === "additionalProperties"
      ? ` (${(e.params as { additionalProperty?: string }).additionalProperty})`
      : "";
    return `${where} ${e.message ?? e.keyword}${extra}`;
  });
  return { valid: false, errors };
}
