// Preload (NODE_OPTIONS=--import): appends "start end statement" (ms, performance.now of this process) for each
// statement this process sends through pg to $PG_TRACE_FILE.<pid>, to see one call's statements on a timeline.
import { appendFileSync } from "node:fs";
import { createRequire } from "node:module";

const file = `${process.env.PG_TRACE_FILE}.${process.pid}`;
const pg = createRequire(`${process.cwd()}/`)("pg");
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (...args) {
  const text = (typeof args[0] === "string" ? args[0] : args[0]?.text)?.replace(/\s+/g, " ").slice(0, 50);
  const t0 = performance.now();
  const record = () => appendFileSync(file, `${t0.toFixed(2)} ${performance.now().toFixed(2)} ${text}\n`);
  const cb = args.findIndex((a) => typeof a === "function");
  if (cb >= 0) {
    const done = args[cb];
    args[cb] = (...r) => {
      record();
      return done(...r);
    };
  }
  const out = query.apply(this, args);
  if (out && typeof out.then === "function") out.then(record, () => {});
  return out;
};
