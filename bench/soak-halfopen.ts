// `npm run soak:halfopen`: CALLS (default 5000) sequential majority→all calls over 3 node processes and 2 hub
// replica processes, while every CHAOS_MS one node's current path is half-opened (blackholed) so it must move
// to the other replica. Prints failures and call times; exits non-zero on any failure.
import { runHalfOpenSoak } from "../test/helpers/halfopen.ts";

const calls = Number(process.env.CALLS ?? 5000);
const chaosEveryMs = Number(process.env.CHAOS_MS ?? 700);
const db = process.env.DB;
console.log(
  `soak:halfopen  calls=${calls} (each majority then all), nodes=3, replicas=2, chaos every ${chaosEveryMs} ms, db=${db ?? "sqlite (temp file)"}`,
);
const t0 = Date.now();
const r = await runHalfOpenSoak({ calls, chaosEveryMs, db, log: (s) => console.log(`  ${s}`) });
console.log(`\n| calls | failed | path moves | p50 ms | p99 ms | max ms | wall s |`);
console.log(`| ---: | ---: | ---: | ---: | ---: | ---: | ---: |`);
console.log(
  `| ${r.calls} | ${r.failed} | ${r.moves} | ${r.p50CallMs} | ${r.p99CallMs} | ${r.maxCallMs} | ${((Date.now() - t0) / 1000).toFixed(0)} |`,
);
for (const f of r.failures) console.log(`  failure: ${f}`);
process.exit(r.failed === 0 ? 0 : 1);
