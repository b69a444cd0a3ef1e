// Example handlers for the compose file's node agents (`fleetlink node --handlers`): method name → function.
export const handlers = {
  echo: (payload) => payload,
  square: (n) => n * n,
  whoami: (_payload, ctx) => ({ node: ctx.nodeId, pid: process.pid }),
};
