// Each broken mini node is rejected by the scenario that checks the duty it breaks (docs/conformance.md), run
// with that scenario and one it must still pass, so that a failure is pinned to the right check. The kits run
// side by side (each has its own hubs, ports and node): they mostly wait on timers.
import { describe, expect, test } from "vitest";
import { runKit } from "../../src/conformance/kit.ts";
import { expectFailures, miniNode } from "./helpers.ts";

const cases: [defect: string, scenarios: string[], failures: Record<string, RegExp>][] = [
  [
    "no-ack",
    ["echo", "handler-error"],
    { echo: /never acknowledged/, "handler-error": /never acknowledged/ },
  ],
  [
    "no-inflight",
    ["echo", "reply-resend"],
    { "reply-resend": /hello after the reconnect had inflight \[\]/ },
  ],
  [
    "no-dedupe",
    ["echo", "redelivery-once"],
    { "redelivery-once": /ran instruction \S+ 2 times .*delivered [2-9] times/ },
  ],
  ["no-progress", ["echo", "lease-extension"], { "lease-extension": /delivered \d+ times: its lease/ }],
  ["serial", ["echo", "inflight-window"], { "inflight-window": /at most [12] ran at once/ }],
  ["one-hub", ["echo", "reconnect"], { reconnect: /reconnect to the other replica/ }],
  ["no-leave", ["echo", "leave"], { leave: /without saying leave/ }],
  ["stop-on-replaced", ["echo", "superseded"], { superseded: /exited with code 4/ }],
  [
    "ignores-cancel",
    ["echo", "cancel"],
    { cancel: /sent 1 reply frame\(s\) for instruction \S+, the first \d+ ms after it was withdrawn/ },
  ],
];

describe("conformance kit - broken nodes", () => {
  test.concurrent.each(cases)(
    "conformance kit - the %s mini node fails exactly the scenario that checks it",
    async (defect, scenarios, failures) => {
      const r = await runKit({ bin: miniNode(defect), scenarios });
      expect(r.verdicts.map((v) => v.scenario)).toEqual(scenarios);
      expectFailures(r, failures);
    },
    60_000,
  );

  test.concurrent("conformance kit - a node that retries after close 4002 fails version-refusal", async () => {
    const r = await runKit({ bin: miniNode("ignore-refusal"), scenarios: ["echo", "version-refusal"] });
    expectFailures(r, {
      "version-refusal": /said hello \d+ times in 10 s to a hub that refused its protocol/,
    });
  }, 60_000);
});
