import { text } from "node:stream/consumers";
import { Command, InvalidArgumentError, Option } from "commander";
import type { Fleet, FleetNode } from "../coordinator/fleet.ts";
import type { Quorum } from "../coordinator/quorum.ts";
import type { RunHandle } from "../coordinator/run.ts";
import { FleetlinkError, shownCode } from "../protocol/errors.ts";
import { nodeLabel } from "../protocol/node-label.ts";
import { plural } from "../util/plural.ts";
import { completeWith } from "./completion.ts";
import { withFleet, withHub } from "./connection.ts";
import { parseDuration } from "./flags.ts";
import { byName, didYouMean } from "./nodes.ts";
import { examples } from "./output.ts";

/** `first`, `majority`, `all` or a number of replies. */
export const parseQuorum = (s: string): "first" | "majority" | "all" | number => {
  if (s === "first" || s === "majority" || s === "all") return s;
  if (/^[1-9]\d{0,5}$/.test(s)) return Number(s);
  throw new InvalidArgumentError(
    `--quorum: ${JSON.stringify(s)} is not first, majority, all or a number of replies`,
  );
};

/** A payload is JSON (`'{"a":1}'`, `'"text"'`, `42`); `-` reads it from stdin. */
const readPayload = async (arg: string | undefined): Promise<unknown> => {
  if (arg === undefined) return null;
  const src = arg === "-" ? await text(process.stdin) : arg;
  try {
    return JSON.parse(src);
  } catch (e) {
    throw new FleetlinkError(
      "INVALID_ARGUMENT",
      `payload: not JSON (${(e as Error).message}); quote a string as '"text"'`,
      { field: "payload" },
    );
  }
};

/** The nodes named by `--nodes` (ids or names) or `--all` (every node online and approved now). */
const pickNodes = async (fleet: Fleet, o: { nodes?: string; all?: boolean }): Promise<FleetNode[]> => {
  if (Boolean(o.nodes) === Boolean(o.all))
    throw new FleetlinkError("INVALID_ARGUMENT", "give --nodes a,b or --all (one of them)", {
      field: "nodes",
    });
  if (o.all) {
    const online = await fleet.nodes();
    if (online.length === 0)
      throw new FleetlinkError("INVALID_ARGUMENT", "--all: no node is online and approved now", {
        field: "nodes",
      });
    return online;
  }
  const known = await fleet.nodes({ all: true });
  return String(o.nodes)
    .split(",")
    .map((ref) => ref.trim())
    .filter(Boolean)
    .map((ref) => {
      const hit = known.find((n) => n.id === ref) ?? byName(known, ref, true);
      if (!hit)
        throw new FleetlinkError(
          "NODE_NOT_FOUND",
          `--nodes: no live node with id or name ${JSON.stringify(ref)}${didYouMean(ref, known)} (fleetlink nodes list shows them)`,
          {
            field: "nodes",
          },
        );
      return hit;
    });
};

const emit = (json: boolean, event: Record<string, unknown>, line: string) =>
  process.stdout.write(json ? `${JSON.stringify(event)}\n` : `${line}\n`);

/**
 * `fleetlink call METHOD [PAYLOAD]`: one quorum call from the shell through the coordinator SDK, each reply
 * printed as it arrives, then a summary. Exit status 0 when the quorum was met; otherwise 7 (incomplete) with
 * INCOMPLETE_CALL naming the nodes that failed.
 */
export const callCommand = (): Command => {
  const cmd = withHub(
    new Command("call")
      .description("Call a method on nodes and wait for a quorum of replies, printing each as it arrives.")
      .argument("<method>", "handler name")
      .argument("[payload]", "JSON payload (default: null); - reads it from stdin")
      .option("--nodes <ids>", "node ids or names, comma-separated")
      .option("--all", "every node online and approved now")
      .addOption(
        completeWith(
          new Option("--quorum <q>", "first, majority, all, or a number of replies")
            .default("majority")
            .argParser(parseQuorum),
          ["first", "majority", "all"],
        ),
      )
      .addOption(
        new Option("--timeout <duration>", "deadline for the whole call, e.g. 10s")
          .default(30_000, "30s")
          .argParser((s) => parseDuration(s, "--timeout")),
      )
      .option("--run <id>", "call within this run (default: a new run, finished after the call)")
      .option("--json", "one JSON object per line: each reply, then the summary"),
  );
  examples(cmd, [
    "fleetlink call square 7 --all --quorum all",
    `fleetlink call add '{"a":2,"b":3}' --nodes worker-1,worker-2 --quorum first --timeout 5s`,
    "echo '[1,2,3]' | fleetlink call sum - --all --json",
  ]);
  return cmd.action(async (method: string, payloadArg: string | undefined, o, c: Command) => {
    const payload = await readPayload(payloadArg);
    const json = o.json === true;
    await withFleet(c, async (fleet) => {
      const nodes = await pickNodes(fleet, o);
      const ids = nodes.map((n) => n.id);
      const quorum: Quorum = typeof o.quorum === "number" ? { threshold: o.quorum } : o.quorum;
      if (typeof o.quorum === "number" && o.quorum > ids.length)
        throw new FleetlinkError(
          "INVALID_ARGUMENT",
          `--quorum: ${o.quorum} replies asked of ${plural(ids.length, "node")}`,
          {
            field: "quorum",
          },
        );
      const { quorumFunction } = await import("../coordinator/quorum.ts");
      const decide = quorumFunction(quorum, ids.length);
      const run: RunHandle = o.run ? await fleet.run(o.run) : await fleet.createRun();
      if (!json)
        process.stderr.write(
          `run ${run.id}: ${method} → ${plural(ids.length, "node")}, quorum ${o.quorum}\n`,
        );
      const name = new Map(nodes.map((n) => [n.id, n.name]));
      const replies = new Map<string, unknown>();
      const errors = new Map<string, FleetlinkError>();
      const t0 = Date.now();
      let decision: "done" | "fail" | "wait" = "wait";
      for await (const item of run.stream(ids, method, payload, { timeoutMs: o.timeout })) {
        const ms = Date.now() - t0;
        // The id's last digits: a UUIDv7 begins with its creation time, the same for nodes enrolled together.
        const who = nodeLabel(item.node, item.name ?? name.get(item.node));
        if (item.ok) {
          replies.set(item.node, item.value);
          emit(
            json,
            { type: "reply", node: item.node, name: name.get(item.node), ok: true, value: item.value, ms },
            `${who}  ok  ${ms} ms  ${JSON.stringify(item.value)}`,
          );
        } else {
          errors.set(item.node, item.error);
          emit(
            json,
            {
              type: "reply",
              node: item.node,
              name: name.get(item.node),
              ok: false,
              error: { code: shownCode(item.error), message: item.error.message },
              ms,
            },
            `${who}  ${shownCode(item.error).replace(/^FLEETLINK_E_/, "")}  ${ms} ms  ${item.error.message}`,
          );
        }
        decision = decide({ replies, errors, nodes: ids });
        // Leaving the stream withdraws what was not delivered yet: a met quorum does not wait for the rest.
        if (decision !== "wait") break;
      }
      const ms = Date.now() - t0;
      const unanswered = ids.length - replies.size - errors.size;
      const met = decision === "done";
      emit(
        json,
        {
          type: "summary",
          run: run.id,
          method,
          quorum: o.quorum,
          met,
          replies: replies.size,
          errors: errors.size,
          unanswered,
          ms,
        },
        `quorum ${o.quorum} ${met ? "met" : "NOT met"}: ${replies.size} ${replies.size === 1 ? "reply" : "replies"}, ${errors.size} failed, ${unanswered} not waited for, ${ms} ms`,
      );
      if (!o.run) await run.finish(`fleetlink call ${method}`).catch(() => {});
      if (!met) {
        const failed = [...errors]
          .slice(0, 5)
          .map(([n, e]) => `${nodeLabel(n, name.get(n))}: ${String(e.code).replace(/^FLEETLINK_E_/, "")}`);
        throw new FleetlinkError(
          "INCOMPLETE_CALL",
          `quorum ${o.quorum} not met (${replies.size} ${replies.size === 1 ? "reply" : "replies"}, ${errors.size} failed${failed.length ? `: ${failed.join("; ")}` : ""})`,
        );
      }
    });
  });
};
