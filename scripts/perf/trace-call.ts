// A few sequential calls 300 ms apart, with the hub's statements traced (trace-queries.mjs); prints each call's
// start and end on the hub's clock is not possible across processes, so calls are spaced and printed by gap.
const { fleetlinkSystem } = await import(`${process.cwd()}/bench/peers-fleetlink.ts`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sys = await fleetlinkSystem("postgres");
await sys.setWorkers(1);
for (let i = 0; i < 50; i++) await sys.call(0);
await sleep(500);
for (let i = 0; i < 5; i++) {
  const t = performance.now();
  await sys.call(0);
  console.log(`call ${i}: ${(performance.now() - t).toFixed(2)} ms`);
  await sleep(300);
}
await sys.close();
process.exit(0);
