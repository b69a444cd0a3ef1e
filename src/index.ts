// fleetlink: everything, as one import. fleetlink/coordinator, /node, /hub and /checkpoints each load only
// their side (package.json "exports").
export * from "./checkpoint/index.ts";
export type { OpStatus, Roles, TakeoverRetry, TakeoverStatus } from "./checkpoint/orchestrator.ts";
export type { RoleChange } from "./checkpoint/roles.ts";
export * from "./coordinator/index.ts";
export * from "./hub/index.ts";
export * from "./node/index.ts";
