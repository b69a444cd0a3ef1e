import { describe, expect, test } from "vitest";
import { Admission } from "../../src/hub/http/admission.ts";
import { rejectsWith } from "../helpers/expect.ts";

describe("admission", () => {
  test("admission - beyond the bound a caller is refused RATE_LIMITED at once and nothing is run; room comes back", async () => {
    const a = new Admission(2, "enrolments");
    const gates: (() => void)[] = [];
    const slow = () => new Promise<string>((r) => gates.push(() => r("done")));
    const first = a.run(slow);
    const second = a.run(slow);
    let ran = false;
    const e = await rejectsWith(
      a.run(async () => {
        ran = true;
      }),
      "RATE_LIMITED",
    );
    expect(ran).toBe(false);
    expect(e.message).toContain("2 enrolments in progress");
    expect(a.inProgress).toBe(2);
    gates[0]!();
    expect(await first).toBe("done");
    expect(await a.run(async () => "admitted")).toBe("admitted");
    gates[1]!();
    await second;
    expect(a.inProgress).toBe(0);
  });

  test("admission - a failed run gives its room back", async () => {
    const a = new Admission(1, "stream upgrades");
    await expect(a.run(async () => Promise.reject(new Error("store down")))).rejects.toThrow("store down");
    expect(await a.run(async () => 1)).toBe(1);
  });
});
