import { readFileSync, statSync } from "node:fs";
import { InvalidArgumentError } from "commander";

/** "30s", "5m", "1h", "1500ms" or "24h": a unit is required, so a bare "3" is never taken as 3 ms. */
export const parseDuration = (s: string, flag = "duration"): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim());
  if (!m)
    throw new InvalidArgumentError(`${flag}: ${JSON.stringify(s)} is not a duration like 30s, 5m or 24h`);
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms"]);
};

/** "4194304", "512KiB", "4MiB", "1GiB" (also KB/MB as powers of 1024, as most users mean them). */
export const parseBytes = (s: string, flag = "size"): number => {
  const m = /^(\d+)\s*(|b|kib|kb|k|mib|mb|m|gib|gb|g)$/i.exec(s.trim());
  if (!m) throw new InvalidArgumentError(`${flag}: ${JSON.stringify(s)} is not a size like 4MiB or 65536`);
  const unit = m[2]!.toLowerCase()[0] ?? "b";
  return Number(m[1]) * ({ b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[unit]!;
};

export const parseInteger = (flag: string, min: number, max: number) => (s: string) => {
  const n = Number(s);
  if (!/^\d+$/.test(s.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`${flag}: must be an integer from ${min} to ${max}`);
  return n;
};

/**
 * A secret from a flag, a file or the environment. Files keep secrets out of `ps` output; a file others can
 * read is refused.
 */
export const readSecret = (
  value: string | undefined,
  file: string | undefined,
  name: string,
): string | undefined => {
  if (value !== undefined && file !== undefined)
    throw new InvalidArgumentError(`--${name} and --${name}-file: give only one`);
  if (file === undefined) return value;
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch (e) {
    throw new InvalidArgumentError(`--${name}-file ${file}: ${(e as Error).message}`);
  }
  if (st.mode & 0o077)
    throw new InvalidArgumentError(
      `--${name}-file ${file}: readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
    );
  const s = readFileSync(file, "utf8").trim();
  if (s.length === 0) throw new InvalidArgumentError(`--${name}-file ${file}: empty`);
  return s;
};
