import { EventEmitter } from "node:events";
import { FleetlinkError } from "../protocol/errors.ts";
import { isId, newId } from "../protocol/ids.ts";
import type { Instruction, NodeRecord, NodeStatus, Reply, Run, RunStatus } from "../protocol/types.ts";
import {
  bySeq,
  emptyStats,
  type Row,
  toEnrollToken,
  toInstruction,
  toNode,
  toRecord,
  toReply,
  toRun,
} from "./rows.ts";
import {
  ABANDONED_REASON,
  type ClaimInstructionsInput,
  type ClaimRepliesInput,
  type CleanupResult,
  checkCleanupAge,
  checkExtendLeases,
  checkId,
  checkIds,
  checkInstructions,
  checkListLimit,
  checkName,
  checkNewEnrollToken,
  checkOpenSession,
  checkPositiveInt,
  checkRelease,
  checkRenewals,
  checkReply,
  checkRunStatus,
  checkTransition,
  diagnoseReply,
  type EnrollTokenRecord,
  type ExtendLeasesInput,
  enrollRefusal,
  type ListRunsOptions,
  type NewEnrollToken,
  type NewInstruction,
  type NewNode,
  type NewReply,
  type OpenSessionInput,
  type OpenSessionResult,
  OUTCOME_TEXT,
  type OutcomeCode,
  type PushCall,
  type PushResult,
  type ReleaseInput,
  type ResolvedStoreOptions,
  type SessionRenewal,
  type Store,
  type StoredRecord,
  type StoreReplyResult,
  type StoreStats,
  sessionSuperseded,
} from "./store.ts";

/** One connection (or transaction) that runs `$1`-style parameterised SQL. */
export interface SqlConn {
  q(sql: string, params?: readonly unknown[]): Promise<Row[]>;
  /**
   * The store's time for this write transaction, read once at its start: the injected clock, or the host's
   * (SQLite), or the database's (PostgreSQL without an injected clock, so replicas on skewed hosts agree).
   * Reads make no time decisions and have none.
   */
  readonly now: number;
}

/** A connection for reads, which make no time decisions: asking one for the time is a bug. */
export const readConn = (q: SqlConn["q"]): SqlConn => ({
  q,
  get now(): number {
    throw new Error("a read transaction has no store time");
  },
});

/**
 * The operations whose SQL is the same on SQLite and PostgreSQL. Each backend supplies its connection,
 * transactions, list parameters, and its own claim statement (the one place where the dialects differ in
 * how they make racing replicas safe).
 */
export abstract class SqlStore implements Store {
  abstract readonly backend: "sqlite" | "postgres";
  readonly options: ResolvedStoreOptions;
  constructor(options: ResolvedStoreOptions) {
    this.options = options;
  }

  /** Runs fn in a write transaction that no other replica can interleave with on the rows it touches. */
  protected abstract tx<T>(fn: (c: SqlConn) => Promise<T>, mode?: "read" | "write"): Promise<T>;
  /** A SQL expression usable as `x IN <expr>` for a list bound at parameter `p`. */
  protected abstract inList(p: string): string;
  protected abstract listParam(ids: readonly string[]): unknown;
  /**
   * Row-lock suffix for rows about to be changed by a sweep, given the table alias: PostgreSQL locks them and
   * skips rows another replica holds (so sweeps never wait on each other or deadlock); SQLite's write lock
   * already covers the whole transaction.
   */
  protected abstract skipLocked(alias?: string): string;
  /** Row-lock suffix that keeps a read row from changing until commit. */
  protected abstract readonly shareLock: string;
  /**
   * Row-lock suffix that keeps a read row from being deleted until commit, and lets it be updated meanwhile
   * (PostgreSQL: FOR KEY SHARE, the lock a foreign key check takes; SQLite: nothing).
   */
  protected abstract readonly keyShareLock: string;
  /**
   * Serialises, until commit, the write transactions that use this key (PostgreSQL: a transaction-scoped
   * advisory lock; SQLite: nothing, its write lock already serialises every write transaction).
   */
  protected abstract lockKey(c: SqlConn, key: string): Promise<void>;
  abstract claimInstructions(input: ClaimInstructionsInput): Promise<Instruction[]>;
  abstract claimReplies(input: ClaimRepliesInput): Promise<Reply[]>;
  abstract claimableNodes(limit?: number): Promise<string[]>;
  abstract close(): Promise<void>;

  /** The injected clock or the host's (see `SqlConn.now` for the time transactions use). */
  protected time(): number {
    return this.options.clock();
  }

  async now(): Promise<number> {
    return this.time();
  }

  private readonly local = new EventEmitter();

  /** Tells this handle's watchers now, and other replicas (see `announce`) after the commit. */
  protected changed(): void {
    queueMicrotask(() => this.local.emit("change", "local"));
    this.announce();
  }

  /** Lets other replicas know that something committed (PostgreSQL: NOTIFY, coalesced; SQLite: nothing to do). */
  protected abstract announce(): void;
  /** Starts noticing other processes' commits; returns a stop function. */
  protected abstract watchOthers(onChange: () => void): () => void;

  watch(onChange: (source: "local" | "remote") => void): () => void {
    this.local.on("change", onChange);
    const stop = this.watchOthers(() => onChange("remote"));
    return () => {
      this.local.off("change", onChange);
      stop();
    };
  }

  async releaseInstructions(input: ReleaseInput): Promise<number> {
    checkRelease(input);
    const n = await this.tx(async (c) => {
      const rows = await c.q(
        `UPDATE instructions SET state = 'pending', lease_until = NULL, lease_owner = NULL
         WHERE dst = $1 AND ended = 0 AND state = 'leased' AND (CAST($2 AS TEXT) IS NULL OR lease_owner = $2)
           AND id NOT IN ${this.inList("$3")} RETURNING id`,
        [input.nodeId, input.owner ?? null, this.listParam(input.exceptIds ?? [])],
      );
      return rows.length;
    });
    if (n) this.changed();
    return n;
  }

  async withdrawInstructions(runId: string, ids: readonly string[]): Promise<string[]> {
    checkId("runId", runId);
    checkIds("ids", ids);
    if (ids.length === 0) return [];
    return this.tx(async (c) => {
      // Only still-pending rows: the state guard makes a racing claim and this withdrawal exclusive.
      const rows = await c.q(
        `UPDATE instructions SET state = 'done', ended = 1 WHERE run_id = $1 AND ended = 0 AND state = 'pending' AND id IN ${this.inList("$2")}
         RETURNING id, run_id, src, dst, group_id, method`,
        [runId, this.listParam(ids)],
      );
      for (const i of rows) await this.insertOutcome(c, i, "FLEETLINK_E_CANCELLED", 1);
      return rows.map((r) => r.id as string);
    });
  }

  async getInstructions(runId: string, ids: readonly string[]): Promise<Instruction[]> {
    checkId("runId", runId);
    checkIds("ids", ids);
    if (ids.length === 0) return [];
    const rows = await this.tx(
      (c) =>
        c.q(`SELECT * FROM instructions WHERE run_id = $1 AND id IN ${this.inList("$2")} ORDER BY seq`, [
          runId,
          this.listParam(ids),
        ]),
      "read",
    );
    return rows.map(toInstruction);
  }

  async getReplies(runId: string, instructionIds: readonly string[]): Promise<Reply[]> {
    checkId("runId", runId);
    checkIds("instructionIds", instructionIds);
    if (instructionIds.length === 0) return [];
    const rows = await this.tx(
      (c) =>
        c.q(`SELECT * FROM replies WHERE run_id = $1 AND reply_to IN ${this.inList("$2")} ORDER BY seq`, [
          runId,
          this.listParam(instructionIds),
        ]),
      "read",
    );
    return rows.map(toReply);
  }

  async listRuns(opts: ListRunsOptions = {}): Promise<Run[]> {
    const limit = checkListLimit(opts.limit);
    const status = opts.status === undefined ? null : checkRunStatus("status", opts.status);
    const rows = await this.tx(
      (c) =>
        c.q(
          `SELECT * FROM runs WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
           ORDER BY created_at DESC, id DESC LIMIT $2`,
          [status, limit],
        ),
      "read",
    );
    return rows.map(toRun);
  }

  async listInstructions(runId: string, opts: { limit?: number } = {}): Promise<Instruction[]> {
    checkId("runId", runId);
    const limit = checkListLimit(opts.limit);
    return this.tx(async (c) => {
      const rows = await c.q("SELECT * FROM instructions WHERE run_id = $1 ORDER BY seq DESC LIMIT $2", [
        runId,
        limit,
      ]);
      // An empty list must still tell a run without instructions from one that does not exist.
      if (rows.length === 0) await this.runRow(c, runId);
      return rows.map(toInstruction);
    }, "read");
  }

  private async insertOutcome(c: SqlConn, i: Row, code: OutcomeCode, claimed: 0 | 1): Promise<void> {
    await c.q(
      `INSERT INTO replies (id, run_id, src, dst, reply_to, group_id, method, payload, created_at,
         error_code, error_message, claimed)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (reply_to) DO NOTHING`,
      [
        newId(),
        i.run_id,
        i.dst,
        i.src,
        i.id,
        i.group_id ?? null,
        i.method,
        new Uint8Array(0),
        c.now,
        code,
        OUTCOME_TEXT[code],
        claimed,
      ],
    );
  }

  protected async runRow(c: SqlConn, id: string, lock = ""): Promise<Row> {
    const [r] = await c.q(`SELECT * FROM runs WHERE id = $1 ${lock}`, [checkId("runId", id)]);
    if (!r) throw new FleetlinkError("RUN_NOT_FOUND", `no run ${id}`);
    return r;
  }

  async createRun(opts: { id?: string } = {}): Promise<Run> {
    const id = opts.id === undefined ? newId() : checkId("id", opts.id);
    const rows = await this.tx((c) =>
      c.q(
        `INSERT INTO runs (id, status, reason, created_at, updated_at) VALUES ($1, 'pending', NULL, $2, $2)
         ON CONFLICT (id) DO NOTHING RETURNING *`,
        [id, c.now],
      ),
    );
    if (!rows[0]) throw new FleetlinkError("INVALID_ARGUMENT", `run ${id} exists`, { field: "id" });
    return toRun(rows[0]);
  }

  async getRun(id: string): Promise<Run> {
    return this.tx(async (c) => toRun(await this.runRow(c, id)), "read");
  }

  async transitionRun(id: string, from: RunStatus, to: RunStatus, reason?: string): Promise<Run> {
    checkTransition(from, to);
    return this.tx(async (c) => {
      // Compare-and-set in one statement: of two replicas racing, exactly one sees its row updated.
      const [r] = await c.q(
        "UPDATE runs SET status = $1, reason = $2, updated_at = $3 WHERE id = $4 AND status = $5 RETURNING *",
        [to, reason ?? null, c.now, checkId("runId", id), from],
      );
      if (r) return toRun(r);
      const cur = await this.runRow(c, id);
      throw new FleetlinkError("STATUS_CONFLICT", `run ${id} is ${cur.status}, not ${from}`, {
        field: "from",
      });
    });
  }

  async registerNode(input: NewNode): Promise<NodeRecord> {
    checkName("name", input.name);
    checkPositiveInt("heartbeatIntervalMs", input.heartbeatIntervalMs);
    const [r] = await this.tx(async (c) => {
      // Why racing replicas cannot both take a name: registrations of one name serialise on its lock (PostgreSQL)
      // or the database write lock (SQLite) from before the check until after the insert commits, and the check
      // is a statement run after the lock is held, so it sees the winner's committed row.
      await this.lockKey(c, `node-name:${input.name}`);
      const now = c.now;
      const [holder] = await c.q(
        `SELECT id FROM nodes WHERE name = $1 AND (
           (status = 'online' AND online_until > $2)
           OR (status = 'registered' AND created_at + 2 * heartbeat_interval_ms > $2))
         LIMIT 1`,
        [input.name, now],
      );
      if (holder)
        throw new FleetlinkError("NAME_TAKEN", `a live node (${holder.id}) is named ${input.name}`, {
          field: "name",
        });
      return c.q(
        `INSERT INTO nodes (id, name, status, heartbeat_interval_ms, online_until, credential_hash, created_at, approved)
         VALUES ($1, $2, 'registered', $3, NULL, $4, $5, $6) RETURNING *`,
        [
          newId(),
          input.name,
          input.heartbeatIntervalMs,
          input.credentialHash ?? null,
          now,
          input.approved === false ? 0 : 1,
        ],
      );
    });
    return toNode(r!);
  }

  async approveNode(nodeId: string): Promise<NodeRecord> {
    return this.tx(async (c) => {
      const [r] = await c.q(
        "UPDATE nodes SET approved = 1 WHERE id = $1 AND status <> 'unregistered' RETURNING *",
        [checkId("nodeId", nodeId)],
      );
      if (r) return toNode(r);
      await this.nodeRow(c, nodeId);
      throw new FleetlinkError("NODE_UNREGISTERED", `node ${nodeId} is unregistered`);
    });
  }

  protected async nodeRow(c: SqlConn, id: string, field = "nodeId"): Promise<Row> {
    const [r] = await c.q("SELECT * FROM nodes WHERE id = $1", [checkId(field, id)]);
    if (!r) throw new FleetlinkError("NODE_NOT_FOUND", `no node ${id}`, { field });
    return r;
  }

  async getNode(id: string): Promise<NodeRecord> {
    return this.tx(async (c) => toNode(await this.nodeRow(c, id)), "read");
  }

  async listNodes(opts: { status?: NodeStatus } = {}): Promise<NodeRecord[]> {
    const rows = await this.tx(
      (c) =>
        opts.status === undefined
          ? c.q("SELECT * FROM nodes ORDER BY id")
          : c.q("SELECT * FROM nodes WHERE status = $1 ORDER BY id", [opts.status]),
      "read",
    );
    return rows.map(toNode);
  }

  async heartbeat(nodeId: string, heartbeatIntervalMs?: number, sessionId?: string): Promise<NodeRecord> {
    if (heartbeatIntervalMs !== undefined) checkPositiveInt("heartbeatIntervalMs", heartbeatIntervalMs);
    if (sessionId !== undefined) checkName("sessionId", sessionId);
    return this.tx(async (c) => {
      // The status and session guards are in the UPDATE itself, so a heartbeat racing an unregister can never
      // revive the node, and one racing a newer session's opening never writes for the superseded stream.
      const [r] = await c.q(
        `UPDATE nodes SET status = 'online',
           heartbeat_interval_ms = COALESCE($1, heartbeat_interval_ms),
           online_until = $2 + 2 * COALESCE($1, heartbeat_interval_ms)
         WHERE id = $3 AND status <> 'unregistered' AND (CAST($4 AS TEXT) IS NULL OR session_id = $4) RETURNING *`,
        [heartbeatIntervalMs ?? null, c.now, checkId("nodeId", nodeId), sessionId ?? null],
      );
      if (r) return toNode(r);
      const cur = await this.nodeRow(c, nodeId);
      if (cur.status === "unregistered")
        throw new FleetlinkError("NODE_UNREGISTERED", `node ${nodeId} is unregistered`);
      throw sessionSuperseded(nodeId, sessionId!);
    });
  }

  async openSession(input: OpenSessionInput): Promise<OpenSessionResult> {
    checkOpenSession(input);
    const out = await this.tx(async (c) => {
      const now = c.now;
      // The node's row is written first. A claim for the superseded session holds it share-locked (PostgreSQL)
      // or the write lock (SQLite) from its session check to its commit, so the claim either commits before this
      // UPDATE (and the statements below, which run after it, see its leases and release them) or runs after
      // this commit, finds another session and takes nothing.
      const [r] = await c.q(
        `UPDATE nodes SET status = 'online', session_id = $1,
           heartbeat_interval_ms = COALESCE($2, heartbeat_interval_ms),
           online_until = $3 + 2 * COALESCE($2, heartbeat_interval_ms)
         WHERE id = $4 AND status <> 'unregistered' RETURNING *`,
        [input.sessionId, input.heartbeatIntervalMs ?? null, now, input.nodeId],
      );
      if (!r) {
        await this.nodeRow(c, input.nodeId);
        throw new FleetlinkError("NODE_UNREGISTERED", `node ${input.nodeId} is unregistered`);
      }
      const keep = this.listParam(input.keep ?? []);
      if (input.keep?.length)
        await c.q(
          `UPDATE instructions SET lease_owner = $1, lease_until = $2
           WHERE dst = $3 AND ended = 0 AND state = 'leased' AND id IN ${this.inList("$4")}`,
          [input.sessionId, now + this.options.leaseMs, input.nodeId, keep],
        );
      const released = await c.q(
        `UPDATE instructions SET state = 'pending', lease_until = NULL, lease_owner = NULL
         WHERE dst = $1 AND ended = 0 AND state = 'leased' AND id NOT IN ${this.inList("$2")} RETURNING id`,
        [input.nodeId, keep],
      );
      return { node: toNode(r), released: released.length };
    });
    if (out.released) this.changed();
    return out;
  }

  async renewSessions(items: readonly SessionRenewal[]): Promise<Map<string, number>> {
    checkRenewals(items);
    if (items.length === 0) return new Map();
    const rows = items.map((r) => ({
      id: r.nodeId,
      sid: r.sessionId,
      iv: r.heartbeatIntervalMs ?? null,
      age: r.ageMs,
    }));
    const out = await this.tx(async (c) => {
      // One statement for every node: the session and status guards are in it, as in `heartbeat`, so a
      // superseded stream or an unregistered node is never written (and is left out of what it returns).
      const until = `CAST($2 AS BIGINT) - u.age + 2 * COALESCE(u.iv, nodes.heartbeat_interval_ms)`;
      return c.q(
        `UPDATE nodes SET status = 'online',
           heartbeat_interval_ms = COALESCE(u.iv, nodes.heartbeat_interval_ms),
           online_until = CASE WHEN nodes.online_until IS NULL OR ${until} > nodes.online_until
             THEN ${until} ELSE nodes.online_until END
         FROM ${this.renewalRows("$1")}
         WHERE nodes.id = u.id AND nodes.session_id = u.sid AND nodes.status <> 'unregistered'
         RETURNING nodes.id, nodes.online_until`,
        [JSON.stringify(rows), c.now],
      );
    });
    return new Map(out.map((r) => [r.id as string, Number(r.online_until)]));
  }

  /** A FROM item `u` with rows (id, sid, iv, age) of the JSON array of renewals bound to parameter `p`. */
  protected abstract renewalRows(p: string): string;

  async getSessions(nodeIds: readonly string[]): Promise<Map<string, string | null>> {
    checkIds("nodeIds", nodeIds);
    if (nodeIds.length === 0) return new Map();
    const rows = await this.tx(
      (c) =>
        c.q(`SELECT id, session_id FROM nodes WHERE id IN ${this.inList("$1")}`, [this.listParam(nodeIds)]),
      "read",
    );
    return new Map(rows.map((r) => [r.id as string, (r.session_id as string | null) ?? null]));
  }

  async extendLeases(input: ExtendLeasesInput): Promise<string[]> {
    checkExtendLeases(input);
    if (input.instructionIds.length === 0) return [];
    const rows = await this.tx(async (c) => {
      const until = c.now + (input.leaseMs ?? this.options.leaseMs);
      return c.q(
        `UPDATE instructions SET lease_until = CASE WHEN expires_at < $1 THEN expires_at ELSE $1 END
         WHERE dst = $2 AND lease_owner = $3 AND ended = 0 AND state = 'leased' AND id IN ${this.inList("$4")}
         RETURNING seq, id`,
        [until, input.nodeId, input.sessionId, this.listParam(input.instructionIds)],
      );
    });
    return rows.sort(bySeq).map((r) => r.id as string);
  }

  async unregisterNode(nodeId: string): Promise<NodeRecord> {
    return this.tx(async (c) => {
      const [r] = await c.q("UPDATE nodes SET status = 'unregistered' WHERE id = $1 RETURNING *", [
        checkId("nodeId", nodeId),
      ]);
      if (!r) await this.nodeRow(c, nodeId);
      return toNode(r!);
    });
  }

  async pushInstructions(runId: string, items: readonly NewInstruction[]): Promise<Instruction[]> {
    checkInstructions(items, this.options);
    checkId("runId", runId);
    const pushed = await this.tx((c) => this.pushIn(c, runId, items));
    this.changed();
    return pushed;
  }

  /**
   * Group commit: every push of the batch in one transaction. A push that fails (a finished run, an unknown
   * node, a taken id: rare) rolls that transaction back, and then each push is made in its own, so it fails
   * alone: never partly stored, never two answers for one push.
   */
  async pushBatch(calls: readonly PushCall[]): Promise<PushResult[]> {
    const checked: (PushResult | null)[] = calls.map((call) => {
      try {
        checkInstructions(call.items, this.options);
        checkId("runId", call.runId);
        return null;
      } catch (error) {
        return { ok: false, error };
      }
    });
    const todo = calls.flatMap((call, i) => (checked[i] === null ? [{ call, i }] : []));
    if (todo.length > 1) {
      try {
        const all = await this.tx(async (c) => {
          const out: Instruction[][] = [];
          for (const { call } of todo) out.push(await this.pushIn(c, call.runId, call.items));
          return out;
        });
        this.changed();
        todo.forEach(({ i }, k) => {
          checked[i] = { ok: true, instructions: all[k]! };
        });
        return checked as PushResult[];
      } catch {
        // One of them failed (or the store did): each on its own below says which, and why.
      }
    }
    for (const { call, i } of todo) {
      try {
        checked[i] = { ok: true, instructions: await this.pushInstructions(call.runId, call.items) };
      } catch (error) {
        checked[i] = { ok: false, error };
      }
    }
    return checked as PushResult[];
  }

  /** One push inside the caller's transaction. */
  protected async pushIn(
    c: SqlConn,
    runId: string,
    items: readonly NewInstruction[],
  ): Promise<Instruction[]> {
    // Share-locks the run on PostgreSQL so a concurrent finish waits for this push (or this push sees it).
    const run = await this.runRow(c, runId, this.shareLock);
    if (run.status === "finished") throw new FleetlinkError("RUN_FINISHED", `run ${runId} is finished`);
    const dsts = [...new Set(items.map((i) => i.dst))];
    // Key-share-locks the nodes on PostgreSQL (heartbeats still go through): a cleanup deleting one of them
    // locks it first, so it either committed before this read (NODE_NOT_FOUND) or skips the node until this
    // push has committed and then finds its instruction live. No instruction points at a deleted node.
    const rows =
      dsts.length === 1
        ? await c.q(`SELECT id, status, session_id FROM nodes WHERE id = $1 ${this.keyShareLock}`, [dsts[0]])
        : await c.q(
            `SELECT id, status, session_id FROM nodes WHERE id IN ${this.inList("$1")} ORDER BY id ${this.keyShareLock}`,
            [this.listParam(dsts)],
          );
    const known = new Map(rows.map((r) => [r.id as string, r.status as string]));
    const session = new Map(rows.map((r) => [r.id as string, r.session_id as string | null]));
    items.forEach((it, i) => {
      const status = known.get(it.dst);
      const field = `items[${i}].dst`;
      if (!status) throw new FleetlinkError("NODE_NOT_FOUND", `no node ${it.dst}`, { field });
      if (status === "unregistered")
        throw new FleetlinkError("NODE_UNREGISTERED", `node ${it.dst} is unregistered`, { field });
    });
    return this.insertInstructions(c, runId, items, session, c.now);
  }

  /**
   * Inserts a push's instructions (checked by `pushIn`); items for their node's current session (`session`,
   * read under the lock a claim would take) go in already leased to it. A caller-chosen id that exists
   * already throws INVALID_ARGUMENT naming it, which rolls the push back.
   */
  protected async insertInstructions(
    c: SqlConn,
    runId: string,
    items: readonly NewInstruction[],
    session: ReadonlyMap<string, string | null>,
    now: number,
  ): Promise<Instruction[]> {
    const out: Instruction[] = [];
    // Multi-row INSERTs (500 rows, 6000 parameters each: under both backends' limits): one round trip per
    // chunk instead of one per instruction.
    for (let off = 0; off < items.length; off += 500) {
      const chunk = items.slice(off, off + 500);
      // Items for their node's current session (read above under the lock a claim would take) go in already
      // leased to it, one delivery counted, as a claim would.
      const leaseMs = Math.trunc(this.options.leaseMs);
      const params: unknown[] = [now, runId];
      const tuples = chunk.map((it) => {
        const b = params.length;
        const leased = it.leaseTo !== undefined && session.get(it.dst) === it.leaseTo;
        params.push(
          it.id ?? newId(),
          it.src ?? "coordinator",
          it.dst,
          it.groupId ?? null,
          it.method,
          it.payload ?? new Uint8Array(0),
          it.ttlMs,
          it.maxAttempts ?? this.options.maxAttempts,
          it.holdWhileOffline ? 1 : 0,
          leased ? it.leaseTo : null,
        );
        const p = (k: number) => `$${b + k}`;
        const lease = leased
          ? `'leased', 1, ${p(8)}, CAST($1 AS BIGINT) + ${leaseMs}, ${p(10)}`
          : `'pending', 0, ${p(8)}, NULL, ${p(10)}`;
        return `(${p(1)}, $2, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, $1, ${p(7)}, CAST($1 AS BIGINT) + CAST(${p(7)} AS BIGINT), ${lease}, ${p(9)})`;
      });
      const rows = await c.q(
        `INSERT INTO instructions (id, run_id, src, dst, group_id, method, payload, created_at, ttl_ms, expires_at,
           state, attempts, max_attempts, lease_until, lease_owner, hold_offline)
         VALUES ${tuples.join(", ")}
         ON CONFLICT (id) DO NOTHING RETURNING *`,
        params,
      );
      if (rows.length < chunk.length) {
        // A caller-chosen id that exists already aborts the whole batch: the transaction rolls back.
        const got = new Set(rows.map((r) => r.id as string));
        const i = chunk.findIndex((_, k) => !got.has(params[2 + k * 10] as string));
        throw new FleetlinkError("INVALID_ARGUMENT", `instruction ${chunk[i]?.id} exists`, {
          field: `items[${off + i}].id`,
        });
      }
      out.push(...rows.sort(bySeq).map(toInstruction));
    }
    return out;
  }

  async storeReplies(items: readonly NewReply[]): Promise<StoreReplyResult[]> {
    const checked = items.map((r, i): StoreReplyResult | null => {
      try {
        checkReply(r, `items[${i}]`, this.options);
        return null;
      } catch (error) {
        return { ok: false, error: error as FleetlinkError };
      }
    });
    if (checked.every((c) => c !== null)) return checked as StoreReplyResult[];
    const results = await this.tx(async (c) => {
      const now = c.now;
      const out = [...checked];
      const todo = items.map((r, i) => ({ r, i })).filter(({ i }) => !out[i]);
      for (const [i, res] of await this.storeBatch(c, todo, now)) out[i] = res;
      return out as StoreReplyResult[];
    });
    if (results.some((r) => r.ok && !r.duplicate)) this.changed();
    return results;
  }

  /** Stores valid replies inside the caller's transaction; returns a result per input index. */
  protected async storeBatch(
    c: SqlConn,
    todo: { r: NewReply; i: number }[],
    now: number,
  ): Promise<Map<number, StoreReplyResult>> {
    const out = new Map<number, StoreReplyResult>();
    // In input order, so that of two items reusing a reply id the first wins (as on every backend). SQLite's
    // write lock covers the whole transaction, so the order cannot deadlock with another replica.
    for (const { r, i } of todo) out.set(i, await this.storeOne(c, r, now));
    return out;
  }

  /** Stores one reply, or says why not; inside the caller's transaction. */
  protected async storeOne(c: SqlConn, r: NewReply, now: number): Promise<StoreReplyResult> {
    const id = r.id ?? newId();
    // Ending the instruction and inserting its reply happen in one transaction. The UPDATE's guard
    // (ended = 0) holds the instruction's row lock on PostgreSQL and the database write lock on SQLite,
    // so a racing store or sweep sees 'done' and cannot add a second reply.
    const [ins] = await c.q(
      `UPDATE instructions SET state = 'done', ended = 1, lease_until = NULL, lease_owner = NULL
       WHERE id = $1 AND dst = $2 AND run_id = $3 AND ended = 0 AND expires_at > $4
         AND NOT EXISTS (SELECT 1 FROM replies WHERE id = $5)
       RETURNING *`,
      [r.replyTo, r.nodeId, r.runId, now, id],
    );
    if (ins) {
      const [rep] = await c.q(
        `INSERT INTO replies (id, run_id, src, dst, reply_to, group_id, method, payload, created_at,
           error_code, error_message, claimed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *`,
        [
          id,
          r.runId,
          r.nodeId,
          ins.src,
          r.replyTo,
          ins.group_id ?? null,
          ins.method,
          r.payload ?? new Uint8Array(0),
          now,
          r.error?.code ?? null,
          r.error?.message ?? null,
          r.claimed ? 1 : 0,
        ],
      );
      return { ok: true, reply: toReply(rep!), duplicate: false };
    }
    return this.diagnose(c, r, now);
  }

  /** Why a reply was not stored (or that it is a duplicate), read inside the same transaction. */
  protected async diagnose(c: SqlConn, r: NewReply, now: number): Promise<StoreReplyResult> {
    const [run] = await c.q("SELECT id FROM runs WHERE id = $1", [r.runId]);
    if (!run) return { ok: false, error: new FleetlinkError("RUN_NOT_FOUND", `no run ${r.runId}`) };
    const [row] = await c.q("SELECT run_id, dst, expires_at FROM instructions WHERE id = $1", [r.replyTo]);
    const [existing] = await c.q("SELECT * FROM replies WHERE reply_to = $1", [r.replyTo]);
    const [taken] = r.id ? await c.q("SELECT 1 AS x FROM replies WHERE id = $1", [r.id]) : [];
    const info = row && {
      runId: row.run_id as string,
      dst: row.dst as string,
      expiresAt: Number(row.expires_at),
    };
    return diagnoseReply(r, info, existing && toReply(existing), Boolean(taken), now);
  }

  async sweep(): Promise<number> {
    const made = await this.tx(async (c) => {
      const now = c.now;
      await c.q(
        `UPDATE nodes SET status = 'offline' WHERE id IN (
           SELECT id FROM nodes WHERE status = 'online' AND online_until <= $1 ORDER BY id ${this.skipLocked()})`,
        [now],
      );
      const ended = await c.q(
        `SELECT i.seq, i.id, i.run_id, i.src, i.dst, i.group_id, i.method,
           CASE
             WHEN n.status = 'unregistered' OR ((n.online_until IS NULL OR n.online_until <= $1) AND i.hold_offline = 0)
               THEN 'FLEETLINK_E_NODE_UNAVAILABLE'
             WHEN i.attempts >= i.max_attempts AND (i.state = 'pending' OR i.lease_until <= $1)
               THEN 'FLEETLINK_E_DELIVERY_FAILED'
             ELSE 'FLEETLINK_E_MESSAGE_EXPIRED'
           END AS code
         FROM instructions i JOIN nodes n ON n.id = i.dst
         WHERE i.seq IN (
             -- Candidates through indexes (a scan of every instruction ever kept would grow with history).
             SELECT seq FROM instructions WHERE ended = 0 AND expires_at <= $1
             -- Out of attempts: a lease that ran out, or a release after the last delivery.
             UNION ALL SELECT seq FROM instructions WHERE ended = 0 AND attempts >= max_attempts
               AND (state = 'pending' OR lease_until <= $1)
             -- Live instructions of nodes away: driven from the live instructions (few, through the claim
             -- index), not from every node (an idle fleet of 10,000 made this a scan of 10,000 rows 4 × a second).
             UNION ALL SELECT x.seq FROM instructions x WHERE x.ended = 0 AND EXISTS (
               SELECT 1 FROM nodes w WHERE w.id = x.dst
                 AND (w.status = 'unregistered' OR w.online_until IS NULL OR w.online_until <= $1)))
           AND i.ended = 0 AND (
             i.expires_at <= $1
             OR (i.attempts >= i.max_attempts AND (i.state = 'pending' OR i.lease_until <= $1))
             OR n.status = 'unregistered'
             OR ((n.online_until IS NULL OR n.online_until <= $1) AND i.hold_offline = 0))
         ORDER BY i.seq ${this.skipLocked("i")}`,
        [now],
      );
      for (const i of ended) {
        await c.q(
          "UPDATE instructions SET state = 'done', ended = 1, lease_until = NULL, lease_owner = NULL WHERE seq = $1",
          [i.seq],
        );
        await this.insertOutcome(c, i, i.code as OutcomeCode, 0);
      }
      return ended.length;
    });
    if (made) this.changed();
    return made;
  }

  async getRecord<T>(key: string): Promise<StoredRecord<T> | null> {
    checkName("key", key, 500);
    const [r] = await this.tx((c) => c.q("SELECT * FROM records WHERE key = $1", [key]), "read");
    return r ? toRecord<T>(r) : null;
  }

  async listRecords<T>(prefix: string): Promise<StoredRecord<T>[]> {
    const rows = await this.tx(
      (c) => c.q("SELECT * FROM records WHERE substr(key, 1, length($1)) = $1 ORDER BY key", [prefix]),
      "read",
    );
    return rows.map((r) => toRecord<T>(r));
  }

  async putRecord<T>(key: string, value: T, expectedVersion: number | null): Promise<StoredRecord<T>> {
    checkName("key", key, 500);
    const json = JSON.stringify(value);
    return this.tx(async (c) => {
      // One statement each way: the version guard makes racing writers exclusive.
      const [r] =
        expectedVersion === null
          ? await c.q(
              `INSERT INTO records (key, version, value, updated_at) VALUES ($1, 1, $2, $3)
               ON CONFLICT (key) DO NOTHING RETURNING *`,
              [key, json, c.now],
            )
          : await c.q(
              "UPDATE records SET version = version + 1, value = $2, updated_at = $3 WHERE key = $1 AND version = $4 RETURNING *",
              [key, json, c.now, expectedVersion],
            );
      if (r) return toRecord<T>(r);
      const [cur] = await c.q("SELECT version FROM records WHERE key = $1", [key]);
      throw new FleetlinkError("STATUS_CONFLICT", `record ${key} is at version ${cur?.version ?? "none"}`, {
        field: "expectedVersion",
      });
    });
  }

  async createEnrollToken(input: NewEnrollToken): Promise<EnrollTokenRecord> {
    checkNewEnrollToken(input);
    const [r] = await this.tx((c) =>
      c.q(
        `INSERT INTO enroll_tokens (id, label, secret_hash, created_at, expires_at, uses, used)
         VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING *`,
        [newId(), input.label ?? null, input.secretHash, c.now, input.expiresAt ?? null, input.uses ?? null],
      ),
    );
    return toEnrollToken(r!);
  }

  async listEnrollTokens(): Promise<EnrollTokenRecord[]> {
    const rows = await this.tx(
      (c) => c.q("SELECT * FROM enroll_tokens ORDER BY created_at DESC, seq DESC"),
      "read",
    );
    return rows.map(toEnrollToken);
  }

  async revokeEnrollToken(id: string): Promise<EnrollTokenRecord> {
    checkId("id", id);
    const [r] = await this.tx(async (c) => {
      const rows = await c.q(
        "UPDATE enroll_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *",
        [id, c.now],
      );
      if (!rows[0]) throw new FleetlinkError("TOKEN_NOT_FOUND", `no enrollment token ${id}`, { field: "id" });
      return rows;
    });
    return toEnrollToken(r!);
  }

  async useEnrollToken(id: string, secretHash: string): Promise<EnrollTokenRecord> {
    if (!isId(id) || typeof secretHash !== "string") throw enrollRefusal(undefined, "", 0);
    return this.tx(async (c) => {
      const now = c.now;
      // Every condition is in the UPDATE's WHERE: on PostgreSQL a racing use waits for this row lock and then
      // re-checks `used < uses` against the committed row; on SQLite the write lock serialises the two. Either
      // way the last use goes to exactly one caller.
      const [r] = await c.q(
        `UPDATE enroll_tokens SET used = used + 1, used_at = $3
         WHERE id = $1 AND secret_hash = $2 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > $3) AND (uses IS NULL OR used < uses)
         RETURNING *`,
        [id, secretHash, now],
      );
      if (r) return toEnrollToken(r);
      const [cur] = await c.q("SELECT * FROM enroll_tokens WHERE id = $1", [id]);
      throw enrollRefusal(cur && toEnrollToken(cur), secretHash, now);
    });
  }

  /**
   * Every step locks what it changes with FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite's write lock covers the
   * whole transaction): replicas cleaning up at once never wait on each other or deadlock, and each row is
   * changed, and counted, by exactly one of them. A row another replica holds is left to the next cleanup.
   */
  async cleanup(olderThanMs: number): Promise<CleanupResult> {
    checkCleanupAge(olderThanMs);
    return this.tx(async (c) => {
      const cutoff = c.now - olderThanMs;
      const abandoned = await this.abandonRuns(c, cutoff);
      const gone = await c.q(
        `DELETE FROM instructions WHERE seq IN (
           SELECT seq FROM instructions WHERE ended = 1
             AND id IN (SELECT reply_to FROM replies WHERE claimed = 1 AND created_at <= $1)
           ORDER BY seq ${this.skipLocked()})
         RETURNING id`,
        [cutoff],
      );
      const replies = await c.q(
        `DELETE FROM replies WHERE seq IN (
           SELECT seq FROM replies WHERE claimed = 1 AND created_at <= $1
             AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.id = replies.reply_to)
           ORDER BY seq ${this.skipLocked()})
         RETURNING id`,
        [cutoff],
      );
      // The runs just abandoned go too if nothing of theirs is left (their updated_at is now, not the cutoff).
      const runs = await c.q(
        `DELETE FROM runs WHERE id IN (
           SELECT id FROM runs WHERE status = 'finished' AND (updated_at <= $1 OR id IN ${this.inList("$2")})
             AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.run_id = runs.id)
             AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.run_id = runs.id)
           ORDER BY id ${this.skipLocked()})
         RETURNING id`,
        [cutoff, this.listParam(abandoned)],
      );
      const tokens = await c.q(
        `DELETE FROM enroll_tokens WHERE seq IN (
           SELECT seq FROM enroll_tokens WHERE revoked_at <= $1 OR expires_at <= $1
             OR (used >= uses AND used_at <= $1)
           ORDER BY seq ${this.skipLocked()})
         RETURNING id`,
        [cutoff],
      );
      // Last, so that the node locks (which a push waits for) are held for the shortest time.
      const nodes = await this.deleteSilentNodes(c, cutoff);
      return {
        instructions: gone.length,
        replies: replies.length,
        runs: runs.length,
        abandonedRuns: abandoned.length,
        nodes,
        enrollTokens: tokens.length,
      };
    });
  }

  /**
   * Finishes the runs abandoned before the cutoff; returns their ids. Two statements: the candidates are locked
   * first (SKIP LOCKED: a run a push holds share-locked is left alone), then re-checked and finished by a
   * compare-and-set in a statement of its own. In READ COMMITTED that statement sees every push and reply that
   * committed before the lock was had (the first statement's snapshot may predate them); a push that comes
   * later waits for the lock and then finds the run finished or gone. Replies need a live instruction, which a
   * candidate has none of, so none can be added meanwhile.
   */
  private async abandonRuns(c: SqlConn, cutoff: number): Promise<string[]> {
    const quiet = `runs.status <> 'finished' AND runs.updated_at <= $1
      AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.run_id = runs.id AND (i.ended = 0 OR i.created_at > $1))
      AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.run_id = runs.id AND r.created_at > $1)`;
    const picked = await c.q(`SELECT id FROM runs WHERE ${quiet} ORDER BY id ${this.skipLocked()}`, [cutoff]);
    if (picked.length === 0) return [];
    const done = await c.q(
      `UPDATE runs SET status = 'finished', reason = $2, updated_at = $3
       WHERE id IN ${this.inList("$4")} AND ${quiet} RETURNING id`,
      [cutoff, ABANDONED_REASON, c.now, this.listParam(picked.map((r) => r.id as string))],
    );
    return done.map((r) => r.id as string);
  }

  /**
   * Deletes the nodes offline, unregistered or never approved, silent since before the cutoff and holding no
   * live instruction; returns how many. Locked first, then deleted by a statement that checks every condition
   * again: the age is in the DELETE itself, so a node whose heartbeat committed first is kept (and a heartbeat
   * that waited for the lock finds no node), and the live-instruction check sees every push that committed
   * before the lock was had (a push holds its nodes key-share-locked until commit, see `pushInstructions`).
   */
  private async deleteSilentNodes(c: SqlConn, cutoff: number): Promise<number> {
    const silent = `NOT (nodes.status = 'registered' AND nodes.approved = 1)
      AND COALESCE(nodes.online_until, nodes.created_at) <= $1
      AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.dst = nodes.id AND i.ended = 0)`;
    const picked = await c.q(`SELECT id FROM nodes WHERE ${silent} ORDER BY id ${this.skipLocked()}`, [
      cutoff,
    ]);
    if (picked.length === 0) return 0;
    const gone = await c.q(`DELETE FROM nodes WHERE id IN ${this.inList("$2")} AND ${silent} RETURNING id`, [
      cutoff,
      this.listParam(picked.map((r) => r.id as string)),
    ]);
    return gone.length;
  }

  async stats(): Promise<StoreStats> {
    return this.tx(async (c) => {
      const s: StoreStats = emptyStats();
      for (const r of await c.q("SELECT status, count(*) AS n FROM runs GROUP BY status"))
        s.runs[r.status as RunStatus] = Number(r.n);
      for (const r of await c.q("SELECT status, count(*) AS n FROM nodes GROUP BY status"))
        s.nodes[r.status as NodeStatus] = Number(r.n);
      for (const r of await c.q("SELECT state, count(*) AS n FROM instructions GROUP BY state"))
        s.instructions[r.state as Instruction["state"]] = Number(r.n);
      for (const r of await c.q("SELECT claimed, count(*) AS n FROM replies GROUP BY claimed"))
        s.replies[Number(r.claimed) ? "claimed" : "pending"] = Number(r.n);
      return s;
    }, "read");
  }
}
