// What a request that fails schema validation is told: a union's alternatives in words, else Ajv's message.
import type { FastifySchemaValidationError } from "fastify";
import { describe, expect, test } from "vitest";
import { validationText } from "../../src/hub/http/validation-text.ts";

const err = (o: Partial<FastifySchemaValidationError>): FastifySchemaValidationError =>
  ({
    keyword: "x",
    instancePath: "",
    schemaPath: "#",
    params: {},
    message: "is bad",
    ...o,
  }) as FastifySchemaValidationError;

describe("validationText", () => {
  test("union - every alternative is named, not only the first one's complaint", () => {
    const errors = [
      err({
        keyword: "format",
        instancePath: "/id",
        schemaPath: "#/properties/id/anyOf/0/format",
        params: { format: "uuid" },
        message: 'must match format "uuid"',
      }),
      err({
        keyword: "const",
        instancePath: "/id",
        schemaPath: "#/properties/id/anyOf/1/const",
        params: { allowedValue: "latest" },
        message: "must be equal to constant",
      }),
      err({
        keyword: "anyOf",
        instancePath: "/id",
        schemaPath: "#/properties/id/anyOf",
        message: "must match a schema in anyOf",
      }),
    ];
    expect(validationText(errors, "body", "x")).toEqual({
      field: "body.id",
      message: 'body.id: must be a UUID or "latest"',
    });
    const nullable = [
      err({
        keyword: "type",
        instancePath: "/n",
        schemaPath: "#/properties/n/anyOf/0/type",
        params: { type: "integer" },
      }),
      err({
        keyword: "type",
        instancePath: "/n",
        schemaPath: "#/properties/n/anyOf/1/type",
        params: { type: "null" },
      }),
    ];
    expect(validationText(nullable, "body", "x").message).toBe("body.n: must be of type integer or null");
  });

  test("plain - the first error's field and message, a missing or extra property named in the field", () => {
    expect(
      validationText([err({ instancePath: "/a", message: "must be >= 1" })], "querystring", "x"),
    ).toEqual({
      field: "querystring.a",
      message: "querystring.a: must be >= 1",
    });
    const missing = err({
      keyword: "required",
      params: { missingProperty: "hosts" },
      message: "must have required property 'hosts'",
    });
    expect(validationText([missing], "body", "x").field).toBe("body.hosts");
    expect(validationText([], undefined, "fallback")).toEqual({ field: "", message: ": fallback" });
  });
});
