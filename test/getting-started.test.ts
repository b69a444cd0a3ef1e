// docs/getting-started.md, run as written: every ```sh tour``` block, in order, in one bash shell (later blocks
// use the variables and background jobs of earlier ones), as a newcomer would paste them. The only changes: the
// hubs get free ports instead of 7070/7071, PostgreSQL a schema of its own, and $HOME is a temporary directory
// (the guide writes ~/.local/bin/fleetlink, ~/fleet-tour and ~/sdk-tour). Not run: the ```sh``` block with
// `git clone` and `npm ci`, which this checkout has already done. Every process the shell starts is in its
// process group, killed at the end whatever happened (helpers/doc-shell.ts).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { blockOutput, freePort, runShell, tourBlocks, tourScript } from "./helpers/doc-shell.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "./helpers/postgres.ts";

const ROOT = join(import.meta.dirname, "..");
const doc = readFileSync(join(ROOT, "docs/getting-started.md"), "utf8");
const blocks = tourBlocks(doc);
const home = mkdtempSync(join(tmpdir(), "fleetlink-tour-"));
const pg = PG_URL ? pgSchemaUrl("tour") : undefined;

afterAll(async () => {
  rmSync(home, { recursive: true, force: true });
  if (pg) await dropSchema(pg.schema);
});

describe("docs/getting-started.md", () => {
  test("the guide marks its runnable blocks, and only the install block is left out", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    const others = [...doc.matchAll(/^```(\S*)[^\n]*\n([\s\S]*?)^```$/gm)].filter((m) =>
      m[0].startsWith("```sh\n"),
    );
    expect(others.map((m) => m[2]!.trim().split("\n")[0])).toEqual([
      "git clone https://github.com/fleetlink/fleetlink.git && cd fleetlink",
    ]);
  });

  test.skipIf(!pg)(
    "getting started - tokens, a SQLite hub, 3 nodes, calls, dashboard, a 2nd replica, CLI checkpoints, a failing call, PostgreSQL, the SDK from a packed tarball",
    async () => {
      const [p1, p2] = [await freePort(), await freePort()];
      const script = tourScript(blocks)
        .replaceAll("7070", String(p1))
        .replaceAll("7071", String(p2))
        .replaceAll("schema=fleet_tour", `schema=${pg!.schema}`)
        .replaceAll("postgres://root@127.0.0.1:5432/test?", `${PG_URL!.replace(/\?.*$/, "")}?`);
      const started = Date.now();
      // The guide starts in the checkout (step 1 writes the fleetlink script from there).
      const { code, out } = await runShell(script, { cwd: ROOT, home, timeoutMs: 110_000 });
      const took = Date.now() - started;
      const logs = () => {
        const tail = (f: string) => {
          try {
            return `--- ${f}\n${readFileSync(join(home, "fleet-tour", f), "utf8").slice(-3000)}`;
          } catch {
            return "";
          }
        };
        return [out, ...["hub1.log", "hub2.log", "hub-pg.log", "worker-1.log"].map(tail)].join("\n");
      };
      expect(code, logs()).toBe(0);
      expect(out, logs()).toContain("::done::");
      const section = (n: number) => blockOutput(out, n);

      // 1: the fleetlink script runs this checkout's CLI on Node.js 24.
      expect(section(1)).toMatch(/^fleetlink \d+\.\d+\.\d+ \(Node\.js 24\./m);
      // 2: an enrollment token made by the hub.
      expect(section(2)).toMatch(/^\S+\s+tour\s+valid\s+0\/3\s+enroll\s+default/m);
      // 4: three nodes online.
      expect(section(4).match(/^\S+\s+worker-\d\s+online\s/gm)).toHaveLength(3);
      // 5: calls and their quorums.
      expect(section(5)).toMatch(/quorum majority met: 2 replies/);
      expect(section(5).match(/^worker-\d \(…[0-9a-f]{8}\)\s+ok\s+\d+ ms\s+64$/gm)).toHaveLength(3);
      expect(section(5)).toMatch(/quorum all met: 3 replies, 0 failed/);
      expect(section(5)).toMatch(/"value": ?81/);
      // 6: the dashboard page and a reader token.
      expect(section(6)).toContain("<title>fleetlink</title>");
      expect(section(6)).toMatch(/"role":"reader"/);
      // 7: two replicas on one SQLite file; the fleet goes on without the first.
      expect(section(7)).toMatch(
        new RegExp(`replicas:\\s+http://127.0.0.1:${p1} ready; http://127.0.0.1:${p2} ready`),
      );
      expect(section(7)).toMatch(/^store:\s+sqlite$/m);
      expect(section(7).match(/^worker-\d \(…[0-9a-f]{8}\)\s+ok\s+\d+ ms\s+100$/gm)).toHaveLength(3);
      expect(section(7)).toMatch(new RegExp(`http://127.0.0.1:${p1} DOWN \\(.*ECONNREFUSED`));
      // 8: push at 5, add 100, pull latest: every node is back at 5.
      const ckpt = section(8);
      expect(ckpt).toMatch(/host 2: new host, node /);
      expect(ckpt.match(/^worker-\d \(…[0-9a-f]{8}\)\s+ok\s+\d+ ms\s+105$/gm)).toHaveLength(3);
      const totals = ckpt.slice(ckpt.lastIndexOf('"status": "ok"'));
      expect(totals.match(/^worker-\d \(…[0-9a-f]{8}\)\s+ok\s+\d+ ms\s+5$/gm)).toHaveLength(3);
      expect(ckpt).toMatch(/^pull: ok \S+/m);
      // 9: a handler that throws, a method no node has: exit status 7, each node's code, the node's log line.
      const debug = section(9);
      expect(debug).toMatch(/HANDLER_FAILED\s+\d+ ms\s+cannot divide 1 by zero/);
      expect(debug.match(/^exit status 7$/gm)).toHaveLength(2);
      expect(debug).toMatch(/INVALID_ARGUMENT\s+\d+ ms\s+no handler for method nosuch/);
      expect(
        debug.match(/^\S+\s+worker-\d \(…[0-9a-f]{8}\)\s+divide\s+\S+\s+1\s+HANDLER_FAILED\s/gm),
      ).toHaveLength(3);
      // The node's log, pretty: one line, with the handler's message.
      expect(debug).toMatch(
        /^\d\d:\d\d:\d\d\.\d{3} WARN {2}handler failed node=worker-\d .*method=divide code=FLEETLINK_E_HANDLER_FAILED err="cannot divide 1 by zero"$/m,
      );
      // 10: two replicas on PostgreSQL, the nodes enrolled again.
      expect(section(10)).toMatch(/^store:\s+postgres$/m);
      expect(section(10)).toMatch(/^nodes:\s+3 \(online 3\)$/m);
      expect(section(10).match(/^worker-\d \(…[0-9a-f]{8}\)\s+ok\s+\d+ ms\s+121$/gm)).toHaveLength(3);
      // 11: the packed SDK from a project of its own.
      expect(section(11)).toContain("square(12) from 3 nodes: [ 144, 144, 144 ]");
      // The guide's "ten minutes" are a person's; the commands themselves take well under a minute.
      expect(took).toBeLessThan(100_000);
    },
    120_000,
  );
});
