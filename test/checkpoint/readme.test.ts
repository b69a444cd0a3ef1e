// The Checkpoints section of docs/sdk.md (once the README's): its snippet imports what it uses, and its list of
// error kinds is the code's.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { ERROR_KINDS } from "../../src/checkpoint/object-store.ts";
import * as api from "../../src/index.ts";

const root = join(import.meta.dirname, "../..");
const doc = readFileSync(join(root, "docs/sdk.md"), "utf8");
const from = doc.indexOf("## Checkpoints\n");
const next = doc.indexOf("\n## ", from + 1);
const section = doc.slice(from, next < 0 ? undefined : next);

describe("docs/sdk.md Checkpoints section", () => {
  test("readme - the snippet imports from fleetlink every export it uses, and only exports", () => {
    const snippet = /```ts\n([\s\S]*?)```/.exec(section)![1]!;
    const line = /import \{([^}]*)\} from "fleetlink";/.exec(snippet);
    expect(line, "the snippet imports from fleetlink").not.toBeNull();
    const imported = line![1]!.split(",").map((s) => s.trim());
    for (const name of imported) expect(Object.keys(api), name).toContain(name);
    const body = snippet.replace(/^import .*$/m, "");
    const used = Object.keys(api).filter((name) => new RegExp(`(?<![.\\w])${name}\\b`).test(body));
    expect(used.sort()).toEqual([...imported].sort());
    expect(used).toContain("readAll");
  });

  test("readme - the error kinds listed are exactly those errorKind returns", () => {
    const list = section.slice(section.indexOf("Errors carry a machine-readable kind"));
    const bullet = list.slice(0, list.indexOf("\n\n"));
    const kinds = [...bullet.matchAll(/^\s+`([a-z_]+)` \(/gm)].map((m) => m[1]);
    expect(kinds).toEqual([...ERROR_KINDS]);
  });
});
