// `fleetlink serve --port` on a port already taken: a usage error (64) naming the flag and the fix, not a raw
// EADDRINUSE with exit 1; and the hub it opened is closed again (the process exits by itself).
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { cli } from "./cli-run.ts";

let taken: Server;
let port: number;
const dir = mkdtempSync(join(tmpdir(), "fleetlink-port-"));
beforeAll(async () => {
  taken = createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
  port = (taken.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((r) => taken.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test("serve - a port already in use exits 64 naming --port and the fix", async () => {
  const r = await cli([
    "serve",
    "--db",
    `sqlite:${join(dir, "hub.db")}`,
    "--port",
    String(port),
    "--token",
    "t".repeat(32),
  ]);
  expect(r.code, r.stderr).toBe(ExitCode.usage);
  expect(r.stderr).toMatch(
    new RegExp(
      `--port ${port}: already in use on 127\\.0\\.0\\.1 \\(another fleetlink serve\\?\\): choose another --port`,
    ),
  );
  expect(r.stderr).not.toMatch(/EADDRINUSE/);
});
