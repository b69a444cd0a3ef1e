// Stream frames and message bodies are checked from the same TypeBox schemas the OpenAPI document shows.
import { describe, expect, test } from "vitest";
import { type ErrorName, FleetlinkError } from "../../src/protocol/errors.ts";
import { parseFrame } from "../../src/protocol/frames.ts";
import { newId } from "../../src/protocol/ids.ts";
import { checkStreamRequest, StreamMessages } from "../../src/protocol/stream-schemas.ts";

const fails = (fn: () => unknown, field: string, kind: ErrorName = "INVALID_ARGUMENT"): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FleetlinkError);
    expect({ code: (e as FleetlinkError).code, field: (e as FleetlinkError).field }).toEqual({
      code: `FLEETLINK_E_${kind}`,
      field,
    });
    return (e as Error).message;
  }
  throw new Error(`expected a refusal naming ${field}`);
};

describe("stream schemas", () => {
  test("frames - each type parses to its envelope; extra keys are dropped, bodies kept as they are", () => {
    const b = { deep: [1, { x: 2 }] };
    const req = parseFrame(JSON.stringify({ t: "req", id: "1", m: "hello", b, future: true }));
    expect(req).toEqual({ t: "req", id: "1", m: "hello", b });
    expect(parseFrame('{"t":"res","id":"1"}')).toEqual({ t: "res", id: "1", b: undefined });
    expect(parseFrame('{"t":"evt","m":"replies","b":[]}')).toEqual({ t: "evt", m: "replies", b: [] });
    const err = parseFrame(
      JSON.stringify({
        t: "err",
        id: "2",
        e: { code: "FLEETLINK_E_X", message: "m".repeat(10_000), field: "f" },
      }),
    );
    expect(err).toMatchObject({ t: "err", id: "2", e: { code: "FLEETLINK_E_X", field: "f" } });
    expect((err as { e: { message: string } }).e.message).toMatch(/^m{4096}… \(5904 more characters\)$/);
  });

  test("frames - malformed envelopes are refused naming the field", () => {
    fails(() => parseFrame("{nope"), "frame");
    fails(() => parseFrame("[]"), "frame");
    fails(() => parseFrame("null"), "frame");
    fails(() => parseFrame('{"t":"zzz"}'), "t");
    fails(() => parseFrame('{"t":"toString"}'), "t");
    fails(() => parseFrame('{"t":"req"}'), "id");
    fails(() => parseFrame('{"t":"req","id":"1"}'), "m");
    fails(() => parseFrame('{"t":"req","id":"","m":"x"}'), "id");
    fails(() => parseFrame(JSON.stringify({ t: "req", id: "1", m: "x".repeat(201) })), "m");
    fails(() => parseFrame('{"t":"res","id":5}'), "id");
    fails(() => parseFrame('{"t":"err"}'), "e");
    fails(() => parseFrame('{"t":"err","e":{"message":"x"}}'), "e.code");
    fails(
      () => parseFrame(JSON.stringify({ t: "err", e: { code: "C".repeat(201), message: "" } })),
      "e.code",
    );
    fails(() => parseFrame('{"t":"evt","b":1}'), "m");
  });

  test("checkStreamRequest - valid bodies pass and come back as the same object", () => {
    const hello = { inflight: [newId()], heartbeatIntervalMs: 5000, newerField: 1 };
    expect(checkStreamRequest("node", "hello", hello)).toBe(hello);
    expect(checkStreamRequest("node", "hello", undefined)).toEqual({});
    expect(checkStreamRequest("node", "heartbeat", null)).toEqual({});
    const reply = { id: newId(), runId: newId(), replyTo: newId(), payload: { any: ["json"] }, error: null };
    expect(checkStreamRequest("node", "reply", reply)).toBe(reply);
    checkStreamRequest("node", "reply", { ...reply, error: { code: "E", message: "boom" } });
    checkStreamRequest("node", "progress", { ids: [newId()] });
    checkStreamRequest("node", "instruction", {
      id: newId(),
      runId: newId(),
      method: "square",
      payload: 3,
      groupId: null,
      attempts: 1,
      expiresAt: Date.now(),
    });
    const result = {
      id: newId(),
      replyTo: newId(),
      node: newId(),
      groupId: "g",
      method: "m",
      payload: null,
      error: null,
      createdAt: 1,
    };
    checkStreamRequest("run", "replies", [result]);
  });

  test("checkStreamRequest - bad bodies are refused naming the field; unknown methods name m", () => {
    const reply = { id: newId(), runId: newId(), replyTo: newId() };
    expect(fails(() => checkStreamRequest("node", "reply", { ...reply, id: "x" }), "id")).toMatch(/UUID/);
    fails(() => checkStreamRequest("node", "reply", { id: reply.id, runId: reply.runId }), "replyTo");
    fails(
      () => checkStreamRequest("node", "reply", { ...reply, error: { code: "", message: "m" } }),
      "error.code",
    );
    fails(() => checkStreamRequest("node", "reply", { ...reply, error: { code: "E" } }), "error.message");
    fails(() => checkStreamRequest("node", "reply", { ...reply, error: "boom" }), "error");
    fails(() => checkStreamRequest("node", "reply", undefined), "id");
    fails(() => checkStreamRequest("node", "progress", { ids: [newId(), "nope"] }), "ids.1");
    fails(() => checkStreamRequest("node", "progress", {}), "ids");
    fails(() => checkStreamRequest("node", "hello", { heartbeatIntervalMs: 50 }), "heartbeatIntervalMs");
    fails(() => checkStreamRequest("node", "hello", { inflight: "all" }), "inflight");
    fails(() => checkStreamRequest("node", "hello", []), "b");
    fails(() => checkStreamRequest("run", "replies", [{ id: newId() }]), "0.replyTo");
    fails(() => checkStreamRequest("run", "replies", undefined), "b");
    fails(() => checkStreamRequest("node", "launch", {}), "m");
    fails(() => checkStreamRequest("node", "constructor", {}), "m");
    fails(() => checkStreamRequest("run", "hello", {}), "m");
  });

  test("every stream message has a body schema, and requests an answer schema", () => {
    for (const [stream, methods] of Object.entries(StreamMessages))
      for (const [m, d] of Object.entries(methods)) {
        expect(d.body, `${stream} ${m}`).toBeTypeOf("object");
        if (d.kind === "request")
          expect((d as { response?: object }).response, `${stream} ${m}`).toBeTypeOf("object");
      }
  });
});
