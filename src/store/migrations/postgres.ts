/** Numbered PostgreSQL migrations. Append only: an applied migration is never edited. */
export const postgresMigrations: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "runs, nodes, instructions, replies",
    sql: `
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  reason TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE nodes (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  heartbeat_interval_ms BIGINT NOT NULL,
  online_until BIGINT,
  credential_hash TEXT,
  created_at BIGINT NOT NULL
);
CREATE TABLE instructions (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL,
  src TEXT NOT NULL,
  dst TEXT NOT NULL,
  group_id TEXT,
  method TEXT NOT NULL,
  payload BYTEA NOT NULL,
  created_at BIGINT NOT NULL,
  ttl_ms BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  lease_until BIGINT,
  lease_owner TEXT,
  hold_offline SMALLINT NOT NULL DEFAULT 0
);
CREATE INDEX instructions_claim ON instructions (dst, seq) WHERE state <> 'done';
CREATE INDEX instructions_expiry ON instructions (expires_at) WHERE state <> 'done';
CREATE INDEX instructions_run ON instructions (run_id);
CREATE TABLE replies (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL,
  src TEXT NOT NULL,
  dst TEXT NOT NULL,
  reply_to TEXT NOT NULL UNIQUE,
  group_id TEXT,
  method TEXT NOT NULL,
  payload BYTEA NOT NULL,
  created_at BIGINT NOT NULL,
  error_code TEXT,
  error_message TEXT,
  claimed SMALLINT NOT NULL DEFAULT 0
);
CREATE INDEX replies_unclaimed ON replies (run_id, seq) WHERE claimed = 0;
`,
  },
  {
    version: 2,
    name: "records: small versioned documents (checkpoint status, host roles)",
    sql: `
CREATE TABLE records (
  key TEXT PRIMARY KEY,
  version BIGINT NOT NULL,
  value TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
`,
  },
  {
    version: 3,
    name: "index leased instructions by lease end, for the sweep",
    sql: "CREATE INDEX instructions_lease ON instructions (lease_until) WHERE state = 'leased';",
  },
  {
    version: 4,
    name: "partial indexes keyed on an ended flag that claims never write",
    // A claim changes state, attempts, lease_until and lease_owner. Indexes whose key or predicate uses one of
    // those are rewritten on every claim (bench:claim measured it as the largest cost); \`ended\` changes once.
    sql: `
ALTER TABLE instructions ADD COLUMN ended SMALLINT NOT NULL DEFAULT 0;
UPDATE instructions SET ended = 1 WHERE state = 'done';
DROP INDEX instructions_claim;
DROP INDEX instructions_expiry;
DROP INDEX instructions_lease;
CREATE INDEX instructions_claim ON instructions (dst, seq) WHERE ended = 0;
CREATE INDEX instructions_expiry ON instructions (expires_at) WHERE ended = 0;
ALTER TABLE instructions SET (fillfactor = 80);
`,
  },
  {
    version: 5,
    name: "enrollment: node approval, live-name lookups, enrollment tokens",
    // Nodes that exist already were let in without approval: they migrate as approved.
    sql: `
ALTER TABLE nodes ADD COLUMN approved SMALLINT NOT NULL DEFAULT 1;
CREATE INDEX nodes_name ON nodes (name);
CREATE TABLE enroll_tokens (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  label TEXT,
  secret_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  uses BIGINT,
  used BIGINT NOT NULL DEFAULT 0,
  used_at BIGINT,
  revoked_at BIGINT
);
`,
  },
  {
    version: 6,
    name: "sessions: the node's current stream, for fencing superseded ones",
    sql: "ALTER TABLE nodes ADD COLUMN session_id TEXT;",
  },
  {
    version: 7,
    name: "presence index: the sweep finds nodes whose window ran out without reading every node",
    // Renewals write online_until in batches (one statement per replica per beat round), so keeping this
    // index costs little; the sweep read all nodes 4 times a second without it (10 ms at 10,000 nodes).
    sql: "CREATE INDEX nodes_presence ON nodes (status, online_until);",
  },
  {
    version: 8,
    name: "agents: the node software and protocol version its last hello named",
    sql: `
ALTER TABLE nodes ADD COLUMN agent_name TEXT;
ALTER TABLE nodes ADD COLUMN agent_version TEXT;
ALTER TABLE nodes ADD COLUMN protocol INTEGER;
`,
  },
  {
    version: 9,
    name: "blobs (rows, references, unfinished uploads) and the cancellation log",
    // blob_refs.owner is an instruction id, a reply id, or "upload:<node id | coordinator>"; one row per
    // (blob, owner, run). The cancellation log is short-lived (cleanup keeps 10 minutes of it): replicas read it
    // by seq to tell a node holding an instruction that it ended.
    sql: `
CREATE TABLE blobs (
  sha256 TEXT PRIMARY KEY,
  size BIGINT NOT NULL,
  object_key TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  orphaned_at BIGINT
);
CREATE INDEX blobs_orphaned ON blobs (orphaned_at) WHERE orphaned_at IS NOT NULL;
CREATE TABLE blob_refs (
  sha256 TEXT NOT NULL,
  run_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  kind TEXT NOT NULL,
  node_id TEXT,
  created_at BIGINT NOT NULL,
  UNIQUE (sha256, owner, run_id)
);
CREATE INDEX blob_refs_run ON blob_refs (run_id, sha256);
CREATE INDEX blob_refs_node ON blob_refs (node_id, sha256) WHERE node_id IS NOT NULL;
CREATE INDEX blob_refs_owner ON blob_refs (owner);
CREATE TABLE blob_uploads (
  id TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL,
  size BIGINT NOT NULL,
  run_id TEXT NOT NULL,
  node_id TEXT,
  object_key TEXT NOT NULL,
  "offset" BIGINT NOT NULL DEFAULT 0,
  backend_state TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX blob_uploads_run ON blob_uploads (run_id, sha256);
CREATE INDEX blob_uploads_idle ON blob_uploads (updated_at);
CREATE TABLE cancellations (
  seq BIGSERIAL PRIMARY KEY,
  instruction_id TEXT NOT NULL,
  node_id TEXT NOT NULL,
  code TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX cancellations_age ON cancellations (created_at);
`,
  },
  {
    version: 10,
    name: "trace context of instructions and replies",
    // Nullable, no default: existing rows read as untraced, and no row is rewritten.
    sql: `
ALTER TABLE instructions ADD COLUMN traceparent TEXT;
ALTER TABLE replies ADD COLUMN traceparent TEXT;
`,
  },
  {
    version: 11,
    name: "tenants (runs, nodes, enrollment tokens), principals and the audit log",
    // Rows from before tenants belong to the default tenant, which keeps a single team's behaviour. The audit log
    // is history: cleanup never deletes it.
    sql: `
ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE nodes ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE enroll_tokens ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX runs_tenant ON runs (tenant, created_at);
CREATE INDEX nodes_tenant ON nodes (tenant);
CREATE TABLE principals (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  label TEXT,
  role TEXT NOT NULL,
  tenant TEXT,
  secret_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT
);
CREATE TABLE audit (
  seq BIGSERIAL PRIMARY KEY,
  at BIGINT NOT NULL,
  principal TEXT NOT NULL,
  role TEXT NOT NULL,
  tenant TEXT,
  address TEXT,
  action TEXT NOT NULL,
  target TEXT,
  outcome TEXT NOT NULL,
  detail TEXT
);
CREATE INDEX audit_tenant ON audit (tenant, seq);
`,
  },
  {
    version: 12,
    name: "first delivery time of instructions, for the dashboard's pushed → delivered → replied",
    // Instructions from before have none: the dashboard shows pushed → replied for them.
    sql: `
ALTER TABLE instructions ADD COLUMN delivered_at BIGINT;
`,
  },
];
