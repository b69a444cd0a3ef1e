// docs/protocol.md is the node protocol for implementers in any language; its tables are generated from
// src/protocol by scripts/gen-protocol-docs.ts, and this test fails when the doc and the schemas drift apart.
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { generateProtocolDoc, PARTS, PROTOCOL_DOC } from "../../scripts/gen-protocol-docs.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { NODE_HTTP_METHODS, NODE_HTTP_PREFIX, NodeHttpOnly } from "../../src/protocol/node-http-schemas.ts";
import { NodeStreamMessages } from "../../src/protocol/stream-schemas.ts";
import { HUB_FEATURES } from "../../src/protocol/version.ts";

const doc = readFileSync(PROTOCOL_DOC, "utf8");

describe("protocol doc", () => {
  test("protocol doc - docs/protocol.md is what `npm run docs:protocol` makes of src/protocol (regenerate after a schema change)", () => {
    expect(generateProtocolDoc(doc)).toBe(doc);
  });

  test("protocol doc - a stale table is caught: regenerating a doc whose table was edited by hand restores it", () => {
    const stale = doc.replace("| `inflight` |", "| `inflight_ids` |");
    expect(stale).not.toBe(doc);
    expect(generateProtocolDoc(stale)).toBe(doc);
  });

  test("protocol doc - every stream method, HTTP route, close code and feature is in the doc, each with a meaning", () => {
    for (const m of Object.keys(NodeStreamMessages)) expect(doc).toContain(`#### \`${m}\``);
    for (const r of [...Object.keys(NodeHttpOnly), ...NODE_HTTP_METHODS])
      expect(doc).toContain(`#### \`POST ${NODE_HTTP_PREFIX}/${r}\``);
    for (const [name, code] of Object.entries(CloseCode))
      expect(doc).toMatch(new RegExp(`^\\| ${code} \\| \`${name}\` \\| \\S`, "m"));
    for (const f of HUB_FEATURES) expect(doc).toMatch(new RegExp(`^\\| \`${f}\` \\| \\S`, "m"));
    for (const part of Object.keys(PARTS)) expect(doc).toContain(`<!-- /generated:${part} -->`);
  });
});
