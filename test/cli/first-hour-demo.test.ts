// `fleetlink demo` owns its hub and node processes: killed half-way (a test's timeout sends SIGTERM; Ctrl-C
// sends SIGINT), it ends them before it exits, and run to the end it leaves none either.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { processMark } from "../maelstrom/marked.ts";

const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
const marks: ReturnType<typeof processMark>[] = [];
afterEach(() => {
  for (const m of marks.splice(0)) m.killAll();
});

describe("fleetlink demo", () => {
  test.each(["SIGTERM", "SIGINT"] as const)(
    "demo - sent %s once its nodes are up, it stops the hub and every node, then exits",
    async (sig) => {
      const m = processMark();
      marks.push(m);
      const demo = spawn(process.execPath, [CLI, "demo"], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...m.env },
      });
      const exited = new Promise<number | null>((res) => demo.once("exit", (code) => res(code)));
      try {
        await new Promise<void>((res, rej) => {
          let out = "";
          const t = setTimeout(() => rej(new Error(`nodes not up in 40 s: ${out}`)), 40_000);
          demo.stdout!.on("data", (d) => {
            out += d;
            if (/node-2 +pid/.test(out)) {
              clearTimeout(t);
              res();
            }
          });
        });
        // The demo, its hub and three nodes.
        expect(m.alive().length).toBe(5);
        demo.kill(sig);
        expect(await exited).toBe(130);
        expect(await m.remaining(1000)).toEqual([]);
      } finally {
        demo.kill("SIGKILL");
      }
    },
    60_000,
  );
});
