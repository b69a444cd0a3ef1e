import { expect, test } from "vitest";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "../../src/protocol/limits.ts";
import { resolveOptions } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";

test("options - defaults come from the shared limits; a store-wide maxAttempts above 1000 is refused", async () => {
  expect(resolveOptions()).toMatchObject({
    leaseMs: 30_000,
    maxAttempts: 3,
    maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
  });
  expect(resolveOptions({ maxAttempts: 1000 }).maxAttempts).toBe(1000);
  await rejectsWith((async () => resolveOptions({ maxAttempts: 1001 }))(), "INVALID_ARGUMENT", "maxAttempts");
});
