/**
 * The workloads a node runs, by their Maelstrom names. Apart from their code (index.ts, which must have one
 * of each) so that the CLI can declare its choices without loading the runtime.
 */
export const WORKLOAD_NAMES = ["echo", "unique-ids", "g-set", "broadcast"] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];
