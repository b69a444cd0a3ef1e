import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The dashboard is built into web/dist, which every hub replica serves at `/` (src/hub/dashboard.ts).
const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // One small bundle; no source maps shipped in the package.
    sourcemap: false,
    target: "es2022",
  },
});
