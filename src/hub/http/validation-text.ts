import type { FastifySchemaValidationError } from "fastify";

/** Formats a schema error message names in words a user knows. */
const FORMATS: Record<string, string> = { uuid: "a UUID", uri: "a URL", "date-time": "an ISO 8601 time" };

/** One alternative of an `anyOf` (a union: a UUID or "latest", a value or null) in words. */
const alternative = (e: FastifySchemaValidationError): string => {
  const p = e.params as { format?: string; allowedValue?: unknown; allowedValues?: unknown[]; type?: string };
  if (e.keyword === "format" && p.format) return FORMATS[p.format] ?? `a ${p.format}`;
  if (e.keyword === "const") return JSON.stringify(p.allowedValue);
  if (e.keyword === "enum" && p.allowedValues)
    return `one of ${p.allowedValues.map((v) => JSON.stringify(v)).join(", ")}`;
  if (e.keyword === "type" && p.type) return p.type === "null" ? "null" : `of type ${p.type}`;
  return (e.message ?? "valid").replace(/^must (be )?/, "");
};

/**
 * What a request that failed validation gets told: `field: message`. A value that matched none of a union's
 * alternatives says what each would accept (`body.id: must be a UUID or "latest"`), not only the first one's
 * complaint (`must match format "uuid"`), which reads as if "latest" were refused too.
 */
export const validationText = (
  errors: FastifySchemaValidationError[],
  context: string | undefined,
  fallback: string,
): { field: string; message: string } => {
  const v = errors[0];
  const params = v?.params as { missingProperty?: string; additionalProperty?: string } | undefined;
  const extra = params?.missingProperty ?? params?.additionalProperty;
  const field = `${context ?? ""}${v?.instancePath ?? ""}`.replace(/\//g, ".") + (extra ? `.${extra}` : "");
  const union = v?.schemaPath.match(/^(.*)\/anyOf\/\d+\//)?.[1];
  if (v && union !== undefined) {
    const alts = errors.filter(
      (e) =>
        e.instancePath === v.instancePath &&
        e.schemaPath.startsWith(`${union}/anyOf/`) &&
        e.keyword !== "anyOf",
    );
    if (alts.length > 1) return { field, message: `${field}: must be ${alts.map(alternative).join(" or ")}` };
  }
  // Ids are UUIDs: say so in words a user acts on, not as the schema's "must match format".
  if (v?.keyword === "format" && (v.params as { format?: string }).format === "uuid")
    return {
      field,
      message: `${field}: must be an id (a UUID, such as 0193a000-0000-7000-8000-000000000001)`,
    };
  return { field, message: `${field}: ${v?.message ?? fallback}` };
};
