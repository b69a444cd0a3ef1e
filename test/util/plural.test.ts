import { describe, expect, test } from "vitest";
import { plural } from "../../src/util/plural.ts";

describe("plural", () => {
  test("plural - one is singular; zero and many are plural; an irregular plural is given", () => {
    expect(plural(1, "node")).toBe("1 node");
    expect(plural(0, "node")).toBe("0 nodes");
    expect(plural(3, "node")).toBe("3 nodes");
    expect(plural(1, "reply", "replies")).toBe("1 reply");
    expect(plural(2, "reply", "replies")).toBe("2 replies");
  });
});
