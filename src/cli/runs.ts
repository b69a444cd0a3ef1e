import { Command, Option } from "commander";
import type { FleetNode } from "../coordinator/fleet.ts";
import { nodeLabel } from "../protocol/node-label.ts";
import type { Run, RunStatus } from "../protocol/types.ts";
import { withClient, withHub } from "./connection.ts";
import { parseInteger } from "./flags.ts";
import { examples, fields, show, table, when, withJson } from "./output.ts";

/** One instruction of a run as `GET /v1/runs/:run/instructions` lists it, with its reply if any. */
export interface RunInstruction {
  id: string;
  dst: string;
  method: string;
  groupId: string | null;
  state: string;
  attempts: number;
  createdAt: number;
  expiresAt: number;
  reply: { id: string; error: { code: string; message: string } | null; createdAt: number } | null;
}

const outcome = (i: RunInstruction): string =>
  i.reply === null
    ? `(${i.state})`
    : i.reply.error === null
      ? "ok"
      : i.reply.error.code.replace(/^FLEETLINK_E_/, "");

const runsTable = (runs: Run[]) =>
  table(
    runs,
    [
      ["ID", (r) => r.id],
      ["TENANT", (r) => r.tenant],
      ["STATUS", (r) => r.status],
      ["CREATED", (r) => when(r.createdAt)],
      ["UPDATED", (r) => when(r.updatedAt)],
      ["REASON", (r) => r.reason ?? ""],
    ],
    "no runs",
  );

const limit = (max: number, dflt: number) =>
  new Option("--limit <n>", `most shown, newest first (at most ${max})`)
    .default(dflt)
    .argParser(parseInteger("--limit", 1, max));

/** `fleetlink runs …`: list runs, show one with its calls and their outcomes, finish one. */
export const runsCommand = (): Command => {
  const cmd = new Command("runs").description("List and create runs, show a run's calls, finish a run.");

  const list = withJson(withHub(cmd.command("list").description("Runs, newest first.")))
    .addOption(
      new Option("--status <status>", "only runs of this status").choices(["pending", "running", "finished"]),
    )
    .addOption(limit(1000, 100))
    .action(async (o, c: Command) => {
      const q = new URLSearchParams({ limit: String(o.limit), ...(o.status ? { status: o.status } : {}) });
      const r = await withClient(c, (h) => h.request<{ runs: Run[] }>("GET", `/v1/runs?${q}`));
      show(c, r, (v) => runsTable(v.runs));
    });
  examples(list, ["fleetlink runs list", "fleetlink runs list --status running --limit 10 --json"]);

  const showCmd = withJson(
    withHub(
      cmd.command("show <run>").description("A run and its instructions, newest first, with their outcomes."),
    ),
  )
    .addOption(limit(1000, 100))
    .action(async (id: string, o, c: Command) => {
      const r = await withClient(c, async (h) => {
        const run = await h.request<{ run: Run }>("GET", `/v1/runs/${encodeURIComponent(id)}`);
        const [ins, nodes] = await Promise.all([
          h.request<{ instructions: RunInstruction[] }>(
            "GET",
            `/v1/runs/${run.run.id}/instructions?limit=${o.limit}`,
          ),
          h.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes"),
        ]);
        return {
          run: run.run,
          instructions: ins.instructions,
          names: new Map(nodes.nodes.map((n) => [n.id, n.name])),
        };
      });
      show(c, { run: r.run, instructions: r.instructions }, (v) => {
        const counts = new Map<string, number>();
        for (const i of v.instructions) counts.set(outcome(i), (counts.get(outcome(i)) ?? 0) + 1);
        return [
          fields([
            ["id", v.run.id],
            ["status", v.run.status],
            ["reason", v.run.reason],
            ["created", when(v.run.createdAt)],
            ["updated", when(v.run.updatedAt)],
            [
              "instructions",
              `${v.instructions.length}${v.instructions.length === o.limit ? "+" : ""}${counts.size ? ` (${[...counts].map(([k, n]) => `${k} ${n}`).join(", ")})` : ""}`,
            ],
          ]),
          "",
          table(
            v.instructions,
            [
              ["INSTRUCTION", (i) => i.id],
              ["NODE", (i) => nodeLabel(i.dst, r.names.get(i.dst))],
              ["METHOD", (i) => i.method],
              ["CALL", (i) => i.groupId],
              ["ATTEMPTS", (i) => i.attempts],
              ["OUTCOME", outcome],
              ["CREATED", (i) => when(i.createdAt)],
              ["REPLIED", (i) => (i.reply ? `${i.reply.createdAt - i.createdAt} ms later` : "")],
            ],
            "no instructions",
          ),
        ].join("\n");
      });
    });
  examples(showCmd, ["fleetlink runs show 0193…", "fleetlink runs show 0193… --limit 20 --json"]);

  const create = withJson(
    withHub(
      cmd
        .command("create")
        .description("Create a run; its id alone on stdout (e.g. RUN=$(fleetlink runs create)).")
        .option(
          "--tenant <tenant>",
          "the run's tenant: its instructions reach only that tenant's nodes (default: your token's, else default)",
        ),
    ),
  ).action(async (o, c: Command) => {
    const body = o.tenant === undefined ? {} : { tenant: o.tenant };
    const r = await withClient(c, (h) => h.request<{ run: Run }>("POST", "/v1/runs", body, { retry: false }));
    show(c, r, (v) => v.run.id);
  });
  examples(create, ["RUN=$(fleetlink runs create)", "fleetlink runs create --tenant team-a --json"]);

  const finish = withJson(
    withHub(cmd.command("finish <run>").description("Finish a run: it takes no new instructions.")),
  )
    .option("--reason <text>", "why (stored with the run)", "finished by fleetlink runs finish")
    .action(async (id: string, o, c: Command) => {
      const r = await withClient(c, async (h) => {
        const { run } = await h.request<{ run: Run }>("GET", `/v1/runs/${encodeURIComponent(id)}`);
        // Compare-and-set from the status just read: a run that changed meanwhile gets STATUS_CONFLICT.
        return h.request<{ run: Run }>(
          "POST",
          `/v1/runs/${run.id}/status`,
          { from: run.status as RunStatus, to: "finished", reason: o.reason },
          { retry: false },
        );
      });
      show(c, r, (v) => `finished run ${v.run.id}`);
    });
  examples(finish, ['fleetlink runs finish 0193… --reason "training done"']);
  examples(cmd, [
    "fleetlink runs list --status running",
    "fleetlink runs show 0193…",
    "fleetlink runs finish 0193… --reason done",
  ]);
  return cmd;
};
