// The Python node (clients/python, over the HTTP node API) passes the kit, as docs/conformance.md runs it.
import { describe, test } from "vitest";
import { runKit } from "../../src/conformance/kit.ts";
import { expectConformant, pythonNode } from "./helpers.ts";

describe("conformance kit - Python node", () => {
  test("conformance kit - the Python node passes every scenario", async () => {
    expectConformant(await runKit({ bin: pythonNode() }));
  }, 120_000);
});
