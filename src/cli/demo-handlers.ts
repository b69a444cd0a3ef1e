// Handlers the demo's node processes run (`fleetlink node --handlers`).
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const handlers = {
  square: (p: unknown) => (p as number) ** 2,
  slow: async (p: unknown) => {
    await sleep((p as { ms: number }).ms);
    return "done";
  },
  config: (p: unknown) => ({ applied: (p as { version: number }).version, pid: process.pid }),
};
