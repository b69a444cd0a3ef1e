import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../protocol/version.ts";

export interface ProbeResult {
  /** The hello's error code, if the hub refused it. */
  refused?: string;
  /** Whether the hub answered `leave` with `{left: true}` (false: it refused it or does not know it). */
  left?: boolean;
}

/**
 * What a hub build implements, learned the way a node would: a throwaway node enrolls, says hello with the
 * current protocol version, then leaves. The kit skips checks a hub cannot support instead of blaming the node.
 */
export const probeHub = async (url: string, enrollToken: string): Promise<ProbeResult> => {
  const res = await fetch(`${url}/v1/nodes/enroll`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${enrollToken}` },
    body: JSON.stringify({ name: `conformance-probe-${randomBytes(4).toString("hex")}` }),
    signal: AbortSignal.timeout(5000),
  });
  const body = (await res.json()) as { node?: { id: string }; credential?: string };
  if (!res.ok || !body.node || !body.credential)
    throw new Error(`probe enrollment failed: HTTP ${res.status}`);
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/nodes/stream`, {
    headers: { authorization: `Bearer ${body.node.id}.${body.credential}` },
  });
  try {
    return await new Promise<ProbeResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("probe: the hub did not answer in 5 s")), 5000);
      const done = (r: ProbeResult) => {
        clearTimeout(timer);
        resolve(r);
      };
      ws.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      ws.on("open", () =>
        ws.send(
          JSON.stringify({
            t: "req",
            id: "hello",
            m: "hello",
            b: {
              protocol: PROTOCOL_VERSION,
              inflight: [],
              agent: { name: "fleetlink-conformance-probe", version: "1" },
            },
          }),
        ),
      );
      ws.on("message", (data) => {
        const f = JSON.parse(String(data)) as { t: string; id?: string; e?: { code: string } };
        if (f.id === "hello" && f.t === "err") done({ refused: f.e?.code });
        else if (f.id === "hello" && f.t === "res")
          ws.send(JSON.stringify({ t: "req", id: "leave", m: "leave", b: {} }));
        else if (f.id === "leave")
          done({ left: f.t === "res" && (f as { b?: { left?: boolean } }).b?.left === true });
      });
    });
  } finally {
    ws.terminate();
  }
};
