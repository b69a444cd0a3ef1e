import type { Instruction, Reply, ReplyError } from "./types.ts";

/** Payloads are JSON values on the API and UTF-8 JSON bytes in the store. */
export const encodePayload = (v: unknown): Uint8Array =>
  v === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(v));

export const decodePayload = (b: Uint8Array): unknown =>
  b.byteLength === 0 ? null : JSON.parse(new TextDecoder().decode(b));

/** An instruction as a node receives it. */
export interface WireInstruction {
  id: string;
  runId: string;
  method: string;
  payload: unknown;
  groupId: string | null;
  attempts: number;
  expiresAt: number;
  /** The W3C trace context the call was pushed with, when it had one. */
  traceparent?: string;
}

/** A reply as a node sends it (`id` is chosen by the node so retransmissions are recognised). */
export interface WireReply {
  id: string;
  runId: string;
  replyTo: string;
  payload?: unknown;
  error?: ReplyError | null;
  /** The handler's trace context (its span's, else the instruction's), when the instruction had one. */
  traceparent?: string;
}

/** A reply as a coordinator receives it. */
export interface WireResult {
  id: string;
  replyTo: string;
  node: string;
  groupId: string | null;
  method: string;
  payload: unknown;
  error: ReplyError | null;
  createdAt: number;
  /** The trace context the node replied with, when there was one. */
  traceparent?: string;
}

export const toWireInstruction = (i: Instruction): WireInstruction => ({
  id: i.id,
  runId: i.runId,
  method: i.method,
  payload: decodePayload(i.payload),
  groupId: i.groupId,
  attempts: i.attempts,
  expiresAt: i.expiresAt,
  // Only when set: untraced instructions keep the frame (and what older nodes see) unchanged.
  ...(i.traceparent ? { traceparent: i.traceparent } : {}),
});

export const toWireResult = (r: Reply): WireResult => ({
  id: r.id,
  replyTo: r.replyTo,
  node: r.src,
  groupId: r.groupId,
  method: r.method,
  payload: decodePayload(r.payload),
  error: r.error,
  createdAt: r.createdAt,
  ...(r.traceparent ? { traceparent: r.traceparent } : {}),
});

/** Stream method names. */
export const NodeMethods = {
  hello: "hello",
  heartbeat: "heartbeat",
  reply: "reply",
  /** Node → hub: these instructions' handlers are still running; extend their leases. */
  progress: "progress",
  /** Node → hub: a graceful leave; the hub marks the node offline at once and ends the session. */
  leave: "leave",
  instruction: "instruction",
  /** Hub → node event, to nodes that asked for it in hello: `{ items }`, instructions not acknowledged each. */
  instructions: "instructions",
  /**
   * Hub → node event: these instructions ended before the node replied (withdrawn, expired, …): stop their
   * handlers and do not reply (a reply sent anyway is refused INSTRUCTION_ENDED).
   */
  cancel: "cancel",
} as const;
export const RunEvents = { replies: "replies" } as const;
/**
 * Coordinator → hub requests on a run stream. `push`: `{ calls: [{ items }] }` (items as in
 * `POST /v1/runs/:run/instructions`), answered `{ results: [{ instructions } | { error }] }`, one per call;
 * `withdraw`: `{ ids }`, answered `{ withdrawn }`.
 */
export const RunMethods = { push: "push", withdraw: "withdraw" } as const;
