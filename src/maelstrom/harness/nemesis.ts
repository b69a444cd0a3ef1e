import type { Rng } from "./rng.ts";

export type PartitionKind = "isolate-one" | "minority-third" | "majority" | "majorities-ring";

export interface Partition {
  kind: PartitionKind;
  description: string;
  /** True if a message from a may reach b. */
  allows: (a: string, b: string) => boolean;
}

const components = (kind: PartitionKind, description: string, groups: string[][]): Partition => {
  const where = new Map<string, number>();
  for (const [i, g] of groups.entries()) for (const n of g) where.set(n, i);
  return { kind, description, allows: (a, b) => where.get(a) === where.get(b) };
};

/** Chooses a partition the way Maelstrom's partition nemesis does, among its four shapes. */
export const randomPartition = (nodes: readonly string[], r: Rng): Partition => {
  const kinds: PartitionKind[] =
    nodes.length >= 3 ? ["isolate-one", "minority-third", "majority", "majorities-ring"] : ["isolate-one"];
  const kind = r.pick(kinds);
  const shuffled = r.shuffle(nodes);
  const n = nodes.length;
  switch (kind) {
    case "isolate-one":
      return components(kind, `${shuffled[0]} isolated`, [[shuffled[0]!], shuffled.slice(1)]);
    case "minority-third": {
      const k = Math.max(1, Math.floor(n / 3));
      return components(kind, `[${shuffled.slice(0, k).join(" ")}] cut from the rest`, [
        shuffled.slice(0, k),
        shuffled.slice(k),
      ]);
    }
    case "majority": {
      const k = Math.floor(n / 2) + 1;
      return components(
        kind,
        `majority [${shuffled.slice(0, k).join(" ")}] | [${shuffled.slice(k).join(" ")}]`,
        [shuffled.slice(0, k), shuffled.slice(k)],
      );
    }
    case "majorities-ring": {
      // Each node sees a majority (itself and its nearest neighbours on a ring), no two see the same one.
      const reach = Math.floor(Math.floor(n / 2) / 2) || 1;
      const pos = new Map(shuffled.map((x, i) => [x, i]));
      return {
        kind,
        description: `majorities ring ${shuffled.join("-")}`,
        allows: (a, b) => {
          const d = Math.abs(pos.get(a)! - pos.get(b)!);
          return Math.min(d, n - d) <= reach;
        },
      };
    }
  }
};
