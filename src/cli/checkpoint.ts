import { Command, InvalidArgumentError, Option } from "commander";
import { HUB_RUN } from "../checkpoint/layout.ts";
import type { OpStatus, Roles } from "../checkpoint/orchestrator.ts";
import type { Fleet } from "../coordinator/fleet.ts";
import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { isId } from "../protocol/ids.ts";
import { nodeLabel } from "../protocol/node-label.ts";
import { withFleet, withHub } from "./connection.ts";
import { parseDuration, parseInteger } from "./flags.ts";
import { resolveNodeIds } from "./nodes.ts";
import { examples, printJson, show, table, when, withJson } from "./output.ts";
import { progressBar } from "./progress.ts";

/** Push and pull results are records: always JSON (scripts read the checkpoint id from them). */
const out = printJson;

/**
 * A fleet push or pull: its final status as JSON on stdout, whatever it is. One that did not end `ok` on every
 * host (a host failed, or `--timeout` ran out while it still ran at the hub) also says on stderr which hosts
 * failed and why, and exits 7 (incomplete, as a call whose quorum was not met: INCOMPLETE_CALL naming the hosts;
 * MESSAGE_EXPIRED when still running).
 */
const fleetOp = async (
  kind: "push" | "pull",
  run: string,
  f: Fleet,
  op: () => Promise<OpStatus & { id: string }>,
): Promise<void> => {
  let s: OpStatus & { id: string };
  try {
    s = await op();
  } catch (e) {
    if (!isFleetlinkError(e, "MESSAGE_EXPIRED")) throw e;
    // The CLI stopped waiting, the hub did not: print where it stands, then fail.
    const now = await f.checkpoints.status(run).catch(() => null);
    if (now) out(now[kind]);
    throw new FleetlinkError(
      "MESSAGE_EXPIRED",
      `${e.message}: fleetlink checkpoint status --run ${run} shows how it ends`,
    );
  }
  out(s);
  if (s.status === "ok") return;
  const failed = s.hosts.filter((h) => h.status !== "ok");
  // Hosts by name, as `call` shows nodes (one listing; ids alone if it fails).
  const names = new Map(
    (await f.nodes({ all: true }).catch(() => [])).map((n) => [n.id, n.name] as [string, string]),
  );
  for (const h of failed)
    process.stderr.write(
      `host ${h.hostIdx} (${nodeLabel(h.nodeId, names.get(h.nodeId))}): ${h.error ? `${h.error.kind}: ${h.error.message}` : h.status}\n`,
    );
  if (failed.some((h) => h.error?.kind === "host_unavailable"))
    process.stderr.write(
      `a host that is down: start its node again on its identity file and run the ${kind} again, or give the host a standby (fleetlink checkpoint assign --run ${run} --hosts … --standby HOST=NODE)\n`,
    );
  const what = failed.length
    ? `failed on ${failed.length} of ${s.hosts.length} ${s.hosts.length === 1 ? "host" : "hosts"} (${failed
        .map((h) => `host ${h.hostIdx}: ${h.error?.kind ?? h.status}`)
        .join("; ")})`
    : `failed: ${s.error ? `${s.error.kind}: ${s.error.message}` : s.status}`;
  throw new FleetlinkError("INCOMPLETE_CALL", `${kind} ${s.id} ${what}`);
};

const rolesTable = (r: Roles | null) =>
  r === null
    ? "no host roles (fleetlink checkpoint assign)"
    : table(r.hosts, [
        ["HOST", (h) => h.hostIdx],
        ["NODE", (h) => h.nodeId],
        ["STANDBY", (h) => h.standby.join(",") || "-"],
      ]);

const opText = (kind: string, s: OpStatus) =>
  [
    `${kind}: ${s.status}${s.id ? ` ${s.id}` : ""}${s.updatedAt ? `, updated ${when(s.updatedAt)}` : ""}${s.error ? ` — ${s.error.kind}: ${s.error.message}` : ""}`,
    ...s.hosts.map(
      (h) =>
        `  host ${h.hostIdx}  ${h.nodeId}  ${h.status}${h.restoresFrom ? ` (restores ${h.restoresFrom}'s state)` : ""}${h.error ? `  ${h.error.kind}: ${h.error.message}` : ""}`,
    ),
  ].join("\n");
const sqlitePath = (db: string) => {
  if (!db.startsWith("sqlite:"))
    throw new InvalidArgumentError("--db: only sqlite:PATH hub databases are snapshotted");
  return db.slice("sqlite:".length).replace(/^\/\//, "").split("?")[0]!;
};

/** `--id`: a checkpoint id (a UUID, as `checkpoint list` shows) or latest; refused before anything is sent. */
const parseCheckpointId = (s: string): string => {
  const id = s.trim();
  if (id === "latest" || isId(id)) return id;
  throw new InvalidArgumentError(
    `--id: ${JSON.stringify(s)} is neither a checkpoint id (a UUID: fleetlink checkpoint list --run RUN ` +
      "or --store URL shows them) nor latest",
  );
};

const parseStandby = (s: string): { hostIdx: number; nodeId: string } => {
  const [k, nodeId] = s.split("=");
  if (nodeId === undefined || nodeId === "")
    throw new InvalidArgumentError(`--standby: ${JSON.stringify(s)} is not HOST=NODE (a node id or name)`);
  return { hostIdx: parseInteger("--standby", 0, 9999)(k ?? ""), nodeId };
};

/**
 * `fleetlink checkpoint …`: the hub's own SQLite state (`--db`) or a fleet run's checkpoints (`--run`),
 * on object storage (`--store file://DIR | s3://BUCKET/PREFIX`).
 */
export const checkpointCommand = (): Command => {
  const cmd = new Command("checkpoint").description(
    "Fleet checkpoints (assign, push, pull, status, list, activate) and hub database snapshots (--db).",
  );
  const store = () =>
    new Option("--store <url>", "object storage: file://DIR or s3://BUCKET/PREFIX").env(
      "FLEETLINK_CHECKPOINT_STORE",
    );
  const timeout = () =>
    new Option("--timeout <duration>", "fleet: how long to wait for the hosts, e.g. 30s or 10m")
      .default(600_000, "10m")
      .argParser((s) => {
        const ms = parseDuration(s, "--timeout");
        if (ms < 1000 || ms > 7 * 86_400_000)
          throw new InvalidArgumentError("--timeout: must be between 1s and 7d");
        return ms;
      });
  /** Fleet mode needs a run; hub-database mode (--db) does not. */
  const needRun = (o: { run?: string }, what: string) => {
    if (!o.run) throw new InvalidArgumentError(`--run is required for ${what}`);
    return o.run;
  };

  const push = withJson(
    withHub(
      cmd
        .command("push")
        .description(
          "Snapshot a hub database (--db --store) or push a run's fleet checkpoint (--run); prints JSON.",
        )
        .addOption(store())
        .option("--db <url>", "hub database to snapshot (sqlite:PATH)")
        .option("--run <id>", "run whose hosts push"),
    ),
  )
    .addOption(
      new Option("--keep <n>", "complete checkpoints to keep (--db)")
        .default(3)
        .argParser(parseInteger("--keep", 1, 1000)),
    )
    .addOption(timeout())
    .action(async (o, c: Command) => {
      if (o.db) {
        if (!o.store) throw new InvalidArgumentError("--store is required with --db");
        const [{ pushHubSnapshot }, { openObjectStore }, { SqliteStore }] = await Promise.all([
          import("../checkpoint/hub-state.ts"),
          import("../checkpoint/open.ts"),
          import("../store/sqlite.ts"),
        ]);
        const s = new SqliteStore(sqlitePath(o.db));
        try {
          const m = await pushHubSnapshot(s, openObjectStore(o.store), {
            keep: o.keep,
            onProgress: progressBar("push"),
          });
          out({ id: m.id, bytes: m.hosts[0]!.size, sha256: m.hosts[0]!.sha256 });
        } finally {
          await s.close();
        }
        return;
      }
      const run = needRun(o, "a fleet push (or --db for a hub snapshot)");
      await withFleet(c, (f) =>
        fleetOp("push", run, f, () => f.checkpoints.push(run, { timeoutMs: o.timeout })),
      );
    });
  examples(push, [
    "fleetlink checkpoint push --run 0193… --timeout 5m",
    "fleetlink checkpoint push --db sqlite:./fleet.db --store file:///backups",
  ]);

  const pull = withJson(
    withHub(
      cmd
        .command("pull")
        .description(
          "Restore a hub database (--db --store) or a run's hosts (--run) from a checkpoint; prints JSON.",
        )
        .addOption(store())
        .option("--db <url>", "hub database to restore (sqlite:PATH); stop the hub first")
        .option("--run <id>", "run whose hosts pull"),
    ),
  )
    .option("--id <id>", "checkpoint id or latest", parseCheckpointId, "latest")
    .option("--force", "replace a local database even if it is newer (never one a running hub has open)")
    .option("--allow-role-changes", "fleet: restore by host index even if roles moved between nodes since")
    .addOption(timeout())
    .action(async (o, c: Command) => {
      if (o.db) {
        if (!o.store) throw new InvalidArgumentError("--store is required with --db");
        const [{ restoreHubSnapshot }, { openObjectStore }] = await Promise.all([
          import("../checkpoint/hub-state.ts"),
          import("../checkpoint/open.ts"),
        ]);
        out(
          await restoreHubSnapshot(openObjectStore(o.store), sqlitePath(o.db), o.id, {
            force: o.force,
            onProgress: progressBar("pull"),
          }),
        );
        return;
      }
      const run = needRun(o, "a fleet pull (or --db to restore a hub database)");
      await withFleet(c, (f) =>
        fleetOp("pull", run, f, () =>
          f.checkpoints.pull(run, o.id, {
            timeoutMs: o.timeout,
            allowRoleChanges: o.allowRoleChanges === true,
          }),
        ),
      );
    });
  examples(pull, [
    "fleetlink checkpoint pull --run 0193… --id latest",
    "fleetlink checkpoint pull --db sqlite:./fleet.db --store file:///backups --id latest",
  ]);

  const list = withJson(
    withHub(
      cmd
        .command("list")
        .description(
          "Complete checkpoints, oldest first: of a run through the hub, or read from --store directly.",
        )
        .addOption(store())
        .option("--run <id>", `run id, or "${HUB_RUN}" for hub snapshots (default: ${HUB_RUN} with --store)`),
    ),
  ).action(async (o, c: Command) => {
    let rows: { id: string; createdAt: number; nHosts: number; bytes: number }[];
    if (o.store) {
      const [{ listCheckpoints }, { openObjectStore }] = await Promise.all([
        import("../checkpoint/layout.ts"),
        import("../checkpoint/open.ts"),
      ]);
      const all = await listCheckpoints(openObjectStore(o.store), o.run ?? HUB_RUN);
      rows = all.map((m) => ({
        id: m.id,
        createdAt: m.createdAt,
        nHosts: m.nHosts,
        bytes: m.hosts.reduce((n, h) => n + h.size, 0),
      }));
    } else {
      const run = needRun(o, "a run's checkpoints (or --store to read object storage)");
      rows = await withFleet(c, (f) => f.checkpoints.list(run));
    }
    show(c, { checkpoints: rows }, (v) =>
      table(
        v.checkpoints,
        [
          ["ID", (m) => m.id],
          ["CREATED", (m) => when(m.createdAt)],
          ["HOSTS", (m) => m.nHosts],
          ["BYTES", (m) => m.bytes],
        ],
        "no complete checkpoints",
      ),
    );
  });
  examples(list, [
    "fleetlink checkpoint list --run 0193…",
    "fleetlink checkpoint list --store file:///backups --json",
  ]);

  const assign = withJson(
    withHub(
      cmd
        .command("assign")
        .description("Give a run's host roles: host k = the k-th node; prints the roles and what changed.")
        .requiredOption("--run <id>", "run id")
        .requiredOption("--hosts <nodes>", "node ids or names, comma-separated: host 0, host 1, …"),
    ),
  )
    .addOption(
      new Option(
        "--standby <k=node,...>",
        "warm standbys by node id or name, e.g. 1=spare-1 (several per host allowed)",
      )
        .default([], "none")
        .argParser((s) => s.split(",").map(parseStandby)),
    )
    .action(async (o, c: Command) => {
      const r = await withFleet(c, async (f) => {
        // Names or ids, as every command that takes a node: one listing resolves the names of both flags.
        const hostRefs = String(o.hosts)
          .split(",")
          .map((h) => h.trim())
          .filter(Boolean);
        const standby = o.standby as { hostIdx: number; nodeId: string }[];
        const ids = await resolveNodeIds(f.http, [...hostRefs, ...standby.map((s) => s.nodeId)], (i) =>
          i < hostRefs.length ? "--hosts" : "--standby",
        );
        const sb = standby.map((s, i) => ({ ...s, nodeId: ids[hostRefs.length + i]! }));
        return f.checkpoints.assign(o.run, ids.slice(0, hostRefs.length), sb);
      });
      show(c, r, (v) =>
        [rolesTable(v), "", ...(v.changes.length ? v.changes.map((x) => x.text) : ["no change"])].join("\n"),
      );
    });
  examples(assign, [
    "fleetlink checkpoint assign --run 0193… --hosts worker-1,worker-2 --standby 1=spare-1",
    "fleetlink checkpoint assign --run 0193… --hosts $N0,$N1 --standby 1=$SPARE",
  ]);

  const status = withJson(
    withHub(
      cmd
        .command("status")
        .description("A run's host roles, push and pull status (per host), and standby takeovers.")
        .requiredOption("--run <id>", "run id"),
    ),
  ).action(async (o, c: Command) => {
    const r = await withFleet(c, async (f) => ({
      roles: await f.checkpoints.roles(o.run),
      ...(await f.checkpoints.status(o.run)),
    }));
    show(c, r, (v) =>
      [
        rolesTable(v.roles),
        "",
        opText("push", v.push),
        opText("pull", v.pull),
        ...(v.takeover.length
          ? [
              "",
              table(v.takeover, [
                ["TAKEOVER HOST", (t) => t.hostIdx],
                ["FROM", (t) => t.from],
                ["TO", (t) => t.to],
                ["STATUS", (t) => t.status],
                ["ATTEMPTS", (t) => t.attempts],
                ["ERROR", (t) => (t.error ? `${t.error.kind}: ${t.error.message}` : "")],
              ]),
            ]
          : []),
      ].join("\n"),
    );
  });
  examples(status, [
    "fleetlink checkpoint status --run 0193…",
    "fleetlink checkpoint status --run 0193… --json",
  ]);

  const activate = withJson(
    withHub(
      cmd
        .command("activate")
        .description("Make host k's first standby take over now (restoring the newest checkpoint first).")
        .requiredOption("--run <id>", "run id")
        .requiredOption("--host <k>", "host index", parseInteger("--host", 0, 9999)),
    ),
  ).action(async (o, c: Command) => {
    const roles = await withFleet(c, (f) => f.checkpoints.activate(o.run, o.host));
    show(
      c,
      { roles },
      (v) => `host ${o.host} is now ${v.roles.hosts[o.host]?.nodeId}\n${rolesTable(v.roles)}`,
    );
  });
  examples(activate, ["fleetlink checkpoint activate --run 0193… --host 1"]);
  examples(cmd, [
    "fleetlink checkpoint assign --run $RUN --hosts $N0,$N1",
    "fleetlink checkpoint push --run $RUN",
    "fleetlink checkpoint status --run $RUN",
    "fleetlink checkpoint push --db sqlite:./fleet.db --store file:///backups",
  ]);
  return cmd;
};
