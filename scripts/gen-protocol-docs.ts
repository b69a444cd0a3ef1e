// Regenerates the generated parts of docs/protocol.md from src/protocol: `npm run docs:protocol`.
// Each part sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; the prose around them is
// written by hand. test/protocol/protocol-doc.test.ts regenerates and fails if the doc differs.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TSchema } from "@sinclair/typebox";
import { CloseCode } from "../src/protocol/close-codes.ts";
import { ErrorCodes, type ErrorName } from "../src/protocol/errors.ts";
import * as frames from "../src/protocol/frames.ts";
import * as limits from "../src/protocol/limits.ts";
import * as nodeHttp from "../src/protocol/node-http-schemas.ts";
import {
  ErrFrameSchema,
  EvtFrameSchema,
  NodeStreamMessages,
  ReqFrameSchema,
  ResFrameSchema,
} from "../src/protocol/stream-schemas.ts";
import * as version from "../src/protocol/version.ts";

const root = join(import.meta.dirname, "..");
const source = (file: string) => readFileSync(join(root, "src/protocol", file), "utf8");
const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");

type Schema = TSchema & Record<string, unknown>;

/** The type of a schema in words a reader of any language knows. */
const typeName = (s: Schema): string => {
  if (Array.isArray(s.anyOf)) return (s.anyOf as Schema[]).map(typeName).join(" or ");
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (Array.isArray(s.enum)) return (s.enum as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(", ");
  switch (s.type) {
    case "array":
      return `array of ${typeName(s.items as Schema)}`;
    case "string":
      return s.format === "uuid" ? "UUID string" : "string";
    case "integer":
    case "number":
    case "boolean":
    case "null":
    case "object":
      return s.type;
    default:
      return "any JSON";
  }
};

/** Bounds a schema states (lengths, ranges, item counts). */
const bounds = (s: Schema): string[] => {
  const out: string[] = [];
  if (s.minLength !== undefined || s.maxLength !== undefined)
    out.push(`${s.minLength ?? 0}–${s.maxLength ?? "∞"} characters`);
  if (s.minimum !== undefined && s.maximum !== undefined) out.push(`${s.minimum}–${s.maximum}`);
  else if (s.minimum !== undefined) out.push(`≥ ${s.minimum}`);
  else if (s.maximum !== undefined) out.push(`≤ ${s.maximum}`);
  if (s.minItems !== undefined) out.push(`at least ${s.minItems} items`);
  if (s.maxItems !== undefined) out.push(`at most ${s.maxItems} items`);
  for (const inner of [s.items, ...((s.anyOf as Schema[] | undefined) ?? [])] as (Schema | undefined)[])
    if (inner && inner.type !== "object") out.push(...bounds(inner).map((b) => `each ${b}`));
  return out;
};

/** The object inside a schema (itself, a nullable one, or an array's items), if it has properties. */
const objectOf = (s: Schema): { schema: Schema; suffix: string } | undefined => {
  if (s.type === "object" && s.properties) return { schema: s, suffix: "." };
  if (s.type === "array" && (s.items as Schema).properties)
    return { schema: s.items as Schema, suffix: "[]." };
  for (const b of (s.anyOf as Schema[] | undefined) ?? []) {
    const o = objectOf(b);
    if (o) return o;
  }
  return undefined;
};

const rows = (s: Schema, prefix = "", out: string[] = []): string[] => {
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set((s.required as string[] | undefined) ?? []);
  for (const [k, p] of Object.entries(props)) {
    const field = `${prefix}${k}`;
    const inner = objectOf(p);
    const description =
      (p.description as string | undefined) ??
      ((p.anyOf as Schema[] | undefined)?.find((b) => b.description)?.description as string | undefined);
    const words = [description, ...bounds(p)].filter(Boolean).join("; ");
    out.push(`| \`${field}\` | ${cell(typeName(p))} | ${required.has(k) ? "yes" : "no"} | ${cell(words)} |`);
    if (inner) rows(inner.schema, `${field}${inner.suffix}`, out);
  }
  return out;
};

/** One field table; an object without properties says so. */
export const fieldTable = (s: TSchema): string => {
  const body = rows(s as Schema);
  if (body.length === 0) return "An empty object `{}` (unknown properties are ignored).\n";
  return `| field | type | required | meaning |\n| --- | --- | --- | --- |\n${body.join("\n")}\n`;
};

const framesPart = (): string => {
  let out = "#### Frame envelopes\n\n";
  for (const [name, s] of [
    ["req", ReqFrameSchema],
    ["res", ResFrameSchema],
    ["err", ErrFrameSchema],
    ["evt", EvtFrameSchema],
  ] as const)
    out += `**\`${name}\`**: ${s.description}.\n\n${fieldTable(s)}\n`;
  for (const [method, m] of Object.entries(NodeStreamMessages)) {
    const dir = m.from === "node" ? "node → hub" : "hub → node";
    if (!("response" in m)) {
      // An event: one-way, no answer.
      out += `#### \`${method}\` (${dir} event)\n\n${m.summary}\n\nBody (\`b\` of the \`evt\` frame):\n\n${fieldTable(m.body)}\n`;
      continue;
    }
    out += `#### \`${method}\` (${dir} request)\n\n${m.summary}\n\nBody (\`b\` of the \`req\` frame):\n\n${fieldTable(m.body)}\n`;
    out += `Answer (\`b\` of the \`res\` frame):\n\n${fieldTable(m.response)}\n`;
  }
  return out;
};

const httpPart = (): string => {
  let out = "";
  for (const [name, r] of Object.entries(nodeHttp.NodeHttpOnly))
    out += `#### \`POST ${nodeHttp.NODE_HTTP_PREFIX}/${name}\`\n\n${r.summary}\n\nBody:\n\n${fieldTable(r.body)}\nAnswer (200):\n\n${fieldTable(r.response)}\n`;
  for (const method of nodeHttp.NODE_HTTP_METHODS) {
    const m = NodeStreamMessages[method];
    const body = {
      ...m.body,
      properties: { session: nodeHttp.SessionHandle, ...m.body.properties },
      required: ["session", ...((m.body.required as string[] | undefined) ?? [])],
    } as unknown as TSchema;
    out += `#### \`POST ${nodeHttp.NODE_HTTP_PREFIX}/${method}\`\n\nThe stream's \`${method}\` (${m.summary.charAt(0).toLowerCase()}${m.summary.slice(1)})\n\nBody:\n\n${fieldTable(body)}\nAnswer (200): the stream's \`${method}\` answer (see above).\n\n`;
  }
  out += `#### 410 \`SESSION_ENDED\` (any request of an ended or unknown session)\n\n${fieldTable(nodeHttp.SessionEndedSchema)}`;
  return out;
};

/** A JSDoc comment (its text captured), never running past its own end. */
const COMMENT = String.raw`/\*\*((?:[^*]|\*(?!/))*)\*/`;

/** `/** comment *\/ name: value` pairs of an object literal or `export const` declarations, from source. */
const documented = (text: string, pattern: RegExp): Map<string, string> => {
  const out = new Map<string, string>();
  for (const m of text.matchAll(pattern))
    out.set(
      m[2]!,
      m[1]!
        .split("\n")
        .map((l) => l.replace(/^\s*\* ?/, "").trim())
        .filter(Boolean)
        .join(" "),
    );
  return out;
};

const closeCodesPart = (): string => {
  const notes = documented(source("close-codes.ts"), new RegExp(`${COMMENT}\\s*(\\w+): \\d+,`, "g"));
  let out = "| code | name | meaning and what the node does |\n| --- | --- | --- |\n";
  for (const [name, code] of Object.entries(CloseCode))
    out += `| ${code} | \`${name}\` | ${cell(notes.get(name) ?? "")} |\n`;
  return out;
};

const constant = new RegExp(`${COMMENT}\\s*export const (\\w+)(?::[^=]+)? =`, "g");
const limitsPart = (): string => {
  let out = "| limit | value | meaning |\n| --- | --- | --- |\n";
  const groups: [string, Record<string, unknown>][] = [
    ["limits.ts", limits],
    ["frames.ts", frames],
    ["node-http-schemas.ts", nodeHttp],
  ];
  for (const [file, mod] of groups)
    for (const [name, note] of documented(source(file), constant)) {
      const v = mod[name];
      if (typeof v === "number") out += `| \`${name}\` | ${v} | ${cell(note)} |\n`;
    }
  const hello = NodeStreamMessages.hello.body.properties;
  out += `| hello \`inflight\` | ${hello.inflight.maxItems} | Most instruction ids a hello may name |\n`;
  out += `| \`heartbeatIntervalMs\` | ${hello.heartbeatIntervalMs.minimum}–${hello.heartbeatIntervalMs.maximum} | The heartbeat intervals a node may ask to be judged by, in ms |\n`;
  out += `| frame \`id\`, \`m\` | ${ReqFrameSchema.properties.id.maxLength} | Longest frame id or method name, in characters |\n`;
  return out;
};

/** What a node does on each error code it can be answered with. The codes' text comes from errors.ts. */
export const NODE_ERRORS: Partial<Record<ErrorName, string>> = {
  UNAUTHORIZED:
    "Enrollment: the enrollment token is wrong, expired or used up. Stream upgrade or `open`: the hub does not know this identity (its database was reset?): stop in `rejected`, or enroll again as a new node if its operator allows it.",
  NODE_UNREGISTERED:
    "The node was unregistered: its identity is dead for good. Stop in `rejected` (or enroll again as a new node if allowed).",
  NODE_PENDING:
    "Waiting for an admin's approval: retry the upgrade or `open` gently (at least 1 s apart, backing off), not as a reconnect storm.",
  NAME_TAKEN: "Enrollment: a live node has this name. Pick another name, or wait until that node is gone.",
  RATE_LIMITED: "Too many requests (enrollments, parked polls): retry after a backoff.",
  INVALID_ARGUMENT:
    "The request is malformed (`field` names what): a bug in the node. Do not resend the same request unchanged.",
  PAYLOAD_TOO_LARGE:
    "A body over the limit. A reply whose payload is too large is stored as this error instead (answered `replacedBy`), so a node that gets it for a reply treats the reply as answered.",
  NOT_ADDRESSEE:
    "A reply (or progress) for an instruction that is not this node's: drop the reply; it can never be stored.",
  INSTRUCTION_ENDED:
    "The instruction already ended (expired, or the hub recorded an outcome): the reply is acknowledged as final; drop it.",
  NODE_NOT_FOUND: "The identity names no node: as UNAUTHORIZED.",
  UNSUPPORTED_PROTOCOL:
    "The hub does not speak the node's protocol version (the message names both): stop in `rejected`; never redial with the same version.",
  SESSION_ENDED:
    "HTTP only: the session ended. Act on `close.code` as on a stream close code (table above), then open a new session and say hello again.",
  STREAM_CLOSED:
    "The hub refused a request because the stream or session is closing (a superseded session, hub shutdown): reconnect.",
  INTERNAL:
    "A hub bug; the request may have happened: retry with backoff (every node request is idempotent).",
};

const errorsPart = (): string => {
  let out = "| code | HTTP | definite | what the node does |\n| --- | --- | --- | --- |\n";
  for (const [name, what] of Object.entries(NODE_ERRORS)) {
    const e = ErrorCodes[name as ErrorName];
    out += `| \`FLEETLINK_E_${name}\` | ${e.status} | ${e.definite ? "yes" : "no"} | ${cell(what)} |\n`;
  }
  return out;
};

const versionsPart = (): string => {
  const doc = new RegExp(`${COMMENT}\\s*export const HUB_FEATURES`).exec(source("version.ts"))![1]!;
  // One list item per feature; an item may go on over indented lines.
  const features = new Map<string, string>();
  let cur: string | null = null;
  for (const line of doc.split("\n").map((l) => l.replace(/^\s*\*\s?/, "").replace(/\s*\*?\s*$/, ""))) {
    const m = /^- `([\w-]+)`: (.*)$/.exec(line);
    if (m) {
      cur = m[1]!;
      features.set(cur, m[2]!);
    } else if (cur && /^\s+\S/.test(line)) features.set(cur, `${features.get(cur)} ${line.trim()}`);
    else cur = null;
  }
  let out = `| name | value |\n| --- | --- |\n`;
  out += `| protocol version of this release (\`PROTOCOL_VERSION\`) | ${version.PROTOCOL_VERSION} |\n`;
  out += `| versions a hub accepts by default (\`SUPPORTED_PROTOCOLS\`) | ${version.SUPPORTED_PROTOCOLS.join(", ")} |\n`;
  out += `| version of a hello without \`protocol\` (\`IMPLICIT_PROTOCOL\`) | ${version.IMPLICIT_PROTOCOL} |\n`;
  out += `| the TypeScript agent's name (\`TS_AGENT_NAME\`) | \`${version.TS_AGENT_NAME}\` |\n\n`;
  out += "| feature | meaning |\n| --- | --- |\n";
  for (const f of version.HUB_FEATURES) out += `| \`${f}\` | ${cell(features.get(f) ?? "")} |\n`;
  return out;
};

/** Every generated part of docs/protocol.md, by marker name. */
export const PARTS: Record<string, () => string> = {
  frames: framesPart,
  http: httpPart,
  "close-codes": closeCodesPart,
  errors: errorsPart,
  limits: limitsPart,
  versions: versionsPart,
};

/** The doc with every generated part replaced by what src/protocol says now. A missing marker throws. */
export const generateProtocolDoc = (doc: string): string => {
  let out = doc;
  for (const [name, make] of Object.entries(PARTS)) {
    const open = `<!-- generated:${name} -->`;
    const close = `<!-- /generated:${name} -->`;
    const a = out.indexOf(open);
    const b = out.indexOf(close);
    if (a < 0 || b < a) throw new Error(`docs/protocol.md: markers ${open} … ${close} missing`);
    out = `${out.slice(0, a + open.length)}\n\n${make().trimEnd()}\n\n${out.slice(b)}`;
  }
  return out;
};

export const PROTOCOL_DOC = join(root, "docs/protocol.md");

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(PROTOCOL_DOC, generateProtocolDoc(readFileSync(PROTOCOL_DOC, "utf8")));
}
