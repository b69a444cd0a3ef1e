// Preload (NODE_OPTIONS=--import): counts the statements each process sends to PostgreSQL through pg, by kind,
// into $PG_COUNT_DIR/<pid>.json every 200 ms.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const dir = process.env.PG_COUNT_DIR;
const require = createRequire(`${process.cwd()}/`);
const pg = require("pg");
const counts = {};
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (...args) {
  const text = typeof args[0] === "string" ? args[0] : args[0]?.text;
  if (text) {
    const key = text.replace(/\s+/g, " ").trim().slice(0, 60);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return query.apply(this, args);
};
setInterval(() => {
  if (Object.keys(counts).length > 0) writeFileSync(`${dir}/${process.pid}.json`, JSON.stringify(counts));
}, 200).unref();
