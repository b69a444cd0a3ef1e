// The kit against the plain-JavaScript mini node (test/fixtures/nodes/mini-node.mjs): correct, it passes every
// scenario; with a defect, the whole kit names exactly the scenario that catches it.
import { describe, test } from "vitest";
import { runKit } from "../../src/conformance/kit.ts";
import { expectConformant, expectFailures, miniNode } from "./helpers.ts";

describe("conformance kit - mini node", () => {
  test.concurrent("conformance kit - the correct mini node passes every scenario", async () => {
    expectConformant(await runKit({ bin: miniNode() }));
  }, 120_000);

  test.concurrent("conformance kit - a node that sends a new reply id on every resend fails reply-resend and slow-hub and nothing else (full run)", async () => {
    const r = await runKit({ bin: miniNode("new-reply-id") });
    expectFailures(r, {
      "reply-resend": /resent its reply with a new reply id/,
      // 2 reply ids, 3 when a loaded machine delays the answer past a third resend.
      "slow-hub": /sent its reply under [2-9] reply ids/,
    });
  }, 120_000);
});
