// fleetlink/hub: a hub in a process of your own: createHub over a store from openStore, and the object
// stores its checkpoints use. The store drivers (node:sqlite, pg) and the AWS SDK load when a store of their
// kind is opened.
export type { ObjectStore } from "../checkpoint/object-store.ts";
export { openObjectStore } from "../checkpoint/open.ts";
export { ErrorCodes, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
export type * from "../protocol/types.ts";
export { DEFAULT_TENANT, ROLES } from "../protocol/types.ts";
export { openStore } from "../store/open.ts";
export type { Store, StoreOptions } from "../store/store.ts";
export type { Access } from "./http/access.ts";
export type { Principal } from "./http/principal.ts";
export { createHub, type Hub, type HubOptions } from "./server.ts";
