// Regenerates docs/errors.md from src/protocol/errors.ts: `npm run docs:errors`.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCodes } from "../src/protocol/errors.ts";

let out = `# Error codes

Every error fleetlink raises, returns over HTTP or sends on a stream carries one of these stable codes.
**Definite** means the operation surely did not happen (safe to retry or give up); **indefinite** means it may
have happened, so a retry must be idempotent (every fleetlink write is).

Generated from \`src/protocol/errors.ts\` by \`npm run docs:errors\`; \`test/protocol/errors.test.ts\` keeps the two in sync.

| code | HTTP | definite | meaning |
| --- | --- | --- | --- |
`;
for (const [k, v] of Object.entries(ErrorCodes))
  out += `| \`FLEETLINK_E_${k}\` | ${v.status} | ${v.definite ? "yes" : "no"} | ${v.text} |\n`;
out += `
The outcome codes \`FLEETLINK_E_NODE_UNAVAILABLE\`, \`FLEETLINK_E_DELIVERY_FAILED\`, \`FLEETLINK_E_MESSAGE_EXPIRED\`
and \`FLEETLINK_E_CANCELLED\` also appear as the \`error.code\` of error replies: an instruction that can no longer be
answered ends in exactly one of them instead of silence.
`;
writeFileSync(join(import.meta.dirname, "../docs/errors.md"), out);
