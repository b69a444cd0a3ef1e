// The trace context on the wire: present only for traced work (an untraced frame is byte-for-byte what older
// nodes and hubs know), checked where it enters (run-stream push items, node replies) naming the field.
import { describe, expect, test } from "vitest";
import { parseItems } from "../../src/hub/delivery/push-body.ts";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { checkStreamRequest } from "../../src/protocol/stream-schemas.ts";
import type { Instruction, Reply } from "../../src/protocol/types.ts";
import { toWireInstruction, toWireResult } from "../../src/protocol/wire.ts";
import { isTraceparent } from "../../src/util/tracing.ts";

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const instruction = (traceparent: string | null): Instruction => ({
  id: newId(),
  runId: newId(),
  src: "coordinator",
  dst: newId(),
  groupId: null,
  method: "m",
  payload: new TextEncoder().encode("1"),
  createdAt: 1,
  ttlMs: 1000,
  expiresAt: 1001,
  state: "leased",
  attempts: 1,
  maxAttempts: 3,
  leaseUntil: 2,
  leaseOwner: "s",
  holdWhileOffline: false,
  traceparent,
});

const caught = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
};

describe("trace context on the wire", () => {
  test("frames - an untraced instruction or result has no traceparent key; a traced one has it", () => {
    expect(Object.keys(toWireInstruction(instruction(null)))).not.toContain("traceparent");
    expect(toWireInstruction(instruction(TP)).traceparent).toBe(TP);
    const reply: Reply = {
      id: newId(),
      runId: newId(),
      src: newId(),
      dst: "coordinator",
      replyTo: newId(),
      groupId: null,
      method: "m",
      payload: new Uint8Array(0),
      createdAt: 1,
      error: null,
    };
    expect(Object.keys(toWireResult(reply))).not.toContain("traceparent");
    expect(toWireResult({ ...reply, traceparent: TP }).traceparent).toBe(TP);
  });

  test("run-stream push - items[i].traceparent is checked and kept; a bad one names its field", () => {
    const item = { dst: newId(), method: "m", ttlMs: 1000 };
    expect(parseItems([item], "items")[0]).not.toHaveProperty("traceparent");
    expect(parseItems([{ ...item, traceparent: TP }], "items")[0]?.traceparent).toBe(TP);
    const e = caught(() => parseItems([item, { ...item, traceparent: TP.toUpperCase() }], "items"));
    expect(isFleetlinkError(e, "INVALID_ARGUMENT")).toBe(true);
    expect((e as { field?: string }).field).toBe("items[1].traceparent");
  });

  test("node reply - traceparent is optional; a bad one is INVALID_ARGUMENT naming traceparent", () => {
    const body = { id: newId(), runId: newId(), replyTo: newId(), payload: 1 };
    expect(checkStreamRequest("node", "reply", body)).toBe(body);
    expect(checkStreamRequest("node", "reply", { ...body, traceparent: TP })).toBeTruthy();
    for (const bad of ["00-x", 7, `${TP} `]) {
      const e = caught(() => checkStreamRequest("node", "reply", { ...body, traceparent: bad }));
      expect(isFleetlinkError(e, "INVALID_ARGUMENT"), String(bad)).toBe(true);
      expect((e as { field?: string }).field).toBe("traceparent");
    }
  });

  test("isTraceparent - version 00, lowercase hex, ids not all zeros, exact length", () => {
    expect(isTraceparent(TP)).toBe(true);
    expect(isTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")).toBe(true);
    for (const bad of [
      TP.toUpperCase(),
      `01${TP.slice(2)}`,
      `00-${"0".repeat(32)}-00f067aa0ba902b7-01`,
      `00-4bf92f3577b34da6a3ce929d0e0e4736-${"0".repeat(16)}-01`,
      `${TP}\n`,
      TP.slice(0, -1),
      null,
      undefined,
    ])
      expect(isTraceparent(bad), String(bad)).toBe(false);
  });
});
