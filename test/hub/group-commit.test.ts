// GroupCommit: items that arrive while a batch is stored go together in the next; with concurrency 2 a second
// batch is stored while the first still commits.
import { expect, test } from "vitest";
import { GroupCommit } from "../../src/hub/delivery/group-commit.ts";

/** A commit that holds each batch until released, recording the batches. */
const held = () => {
  const batches: number[][] = [];
  const open: (() => void)[] = [];
  const commit = (items: number[]) =>
    new Promise<number[]>((r) => {
      batches.push(items);
      open.push(() => r(items.map((i) => i * 10)));
    });
  return { batches, open, commit };
};
const turn = () => new Promise((r) => setImmediate(r));

test("group commit - one batch at a time: what arrives meanwhile goes in the next batch, each item its own result", async () => {
  const h = held();
  const g = new GroupCommit(h.commit, 128);
  const first = g.add(1);
  await turn();
  const later = [g.add(2), g.add(3)];
  await turn();
  expect(h.batches).toEqual([[1]]);
  h.open.shift()!();
  expect(await first).toBe(10);
  await turn();
  expect(h.batches).toEqual([[1], [2, 3]]);
  h.open.shift()!();
  expect(await Promise.all(later)).toEqual([20, 30]);
});

test("group commit - concurrency 2: an item arriving while a batch commits is stored at once in a second batch", async () => {
  const h = held();
  const g = new GroupCommit(h.commit, 128, 2);
  const a = g.add(1);
  await turn();
  const b = g.add(2);
  await turn();
  expect(h.batches).toEqual([[1], [2]]);
  const c = g.add(3);
  await turn();
  // Two in flight: the third waits for either.
  expect(h.batches).toHaveLength(2);
  h.open[1]!();
  expect(await b).toBe(20);
  await turn();
  expect(h.batches).toEqual([[1], [2], [3]]);
  h.open[0]!();
  h.open[2]!();
  expect(await Promise.all([a, c])).toEqual([10, 30]);
});
