// The TypeScript agent over the HTTP node API passes the same kit: the kit judges at the hub, whatever the
// transport.
import { describe, test } from "vitest";
import { runKit } from "../../src/conformance/kit.ts";
import { expectConformant, tsAgent } from "./helpers.ts";

describe("conformance kit - TypeScript agent over HTTP", () => {
  test("conformance kit - fleetlink node --transport http passes every scenario", async () => {
    expectConformant(await runKit({ bin: tsAgent(" --transport http") }));
  }, 120_000);
});
