import type { LivenessRule } from "../stream/liveness.ts";
import type { BackoffPolicy } from "../util/backoff.ts";

/** The agent's retry schedules; the numbers differ, the rule (util/backoff.ts) is one. */
export const Schedules = {
  /** Enrolling while no hub answers. */
  enroll: { initialMs: 200, maxMs: 5000 },
  /** Reconnecting after a lost stream. */
  reconnect: { initialMs: 100, maxMs: 3000 },
  /** Waiting for an admin to approve the node: polls gently (at least 1 s apart), not a reconnect storm. */
  pending: { initialMs: 2000, maxMs: 5000, jitter: 0.5 },
  /** Replaced by another process with our identity: back off hard (2 s doubling to 30 s). */
  replaced: { initialMs: 2000, maxMs: 30_000, jitter: 0.25 },
  /** Resending a reply no hub acknowledged. */
  reply: { initialMs: 200, maxMs: 5000 },
} as const satisfies Record<string, BackoffPolicy>;

/**
 * The same deadline over the HTTP node API, where a parked poll is silent by design and each probe is a request
 * (a fresh poll, which the hub answers along with the parked one): probed after half an interval without an
 * answer (the heartbeats every interval answer too, so an idle node adds about one poll per interval), given up
 * after a whole one, still inside the online window.
 */
export const httpLiveness = (heartbeatIntervalMs: number): { probeAfterMs: number; dropAfterMs: number } => ({
  probeAfterMs: Math.floor(heartbeatIntervalMs / 2),
  dropAfterMs: heartbeatIntervalMs,
});

/**
 * A half-open path (a blackhole closes nothing) must be noticed inside the node's online window (2 × heartbeat
 * interval from its last heartbeat), so the node has moved to another replica before the hub gives up on it.
 * Liveness rides on the heartbeats: their answers come every interval, so a path silent a little longer than
 * an interval has missed one; it is pinged then, and dropped at 1.4 intervals (noticed within 1.5, leaving the
 * ping at least 0.2 of an interval to come back from a hub whose event loop lags, and half an interval to say
 * hello elsewhere). An idle
 * node costs the hub one heartbeat per interval and no pings: pinging every quarter interval, as before, made
 * answering pongs 40 % of an idle 10,000-node hub's CPU.
 */
export const agentLiveness = (heartbeatIntervalMs: number): LivenessRule => ({
  probeAfterMs: Math.floor(heartbeatIntervalMs * 1.1),
  dropAfterMs: Math.floor(heartbeatIntervalMs * 1.4),
  checkMs: Math.max(25, Math.floor(heartbeatIntervalMs / 10)),
});

/**
 * How long a heartbeat may go unanswered before the path is probed, and then dropped if nothing at all is heard
 * for as long again: 1.4 intervals after the last answered heartbeat, as in agentLiveness. That rule alone counts
 * silence from the last frame, and frames after a heartbeat (instructions, acknowledgements) can put that up to an
 * interval later than the heartbeat the online window counts from: a node busy when its path went half-open was
 * dropped up to 2.4 intervals after its last heartbeat, after its window had run out.
 */
export const heartbeatAnswerMs = (heartbeatIntervalMs: number): number =>
  Math.floor(heartbeatIntervalMs * 0.2);
