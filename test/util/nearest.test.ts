import { expect, test } from "vitest";
import { editDistance, nearestName } from "../../src/util/nearest.ts";

test("nearest - edit distance counts a swap of neighbours as one", () => {
  expect(editDistance("worker-2", "worker-2")).toBe(0);
  expect(editDistance("wroker-2", "worker-2")).toBe(1);
  expect(editDistance("worker2", "worker-2")).toBe(1);
  expect(editDistance("", "abc")).toBe(3);
});

test("nearest - the closest name within a third of the typed length, else none", () => {
  const names = ["worker-1", "worker-2", "worker-3", "gpu-a"];
  expect(nearestName("wroker-2", names)).toBe("worker-2");
  expect(nearestName("worker-9", names)).toBe("worker-1");
  expect(nearestName("database", names)).toBeUndefined();
  expect(nearestName("gpu-b", names)).toBe("gpu-a");
});
