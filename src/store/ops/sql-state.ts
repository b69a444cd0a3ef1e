/** The SQLSTATE of a PostgreSQL error, if it is one. */
export const sqlState = (e: unknown): unknown => (e as { code?: unknown } | null)?.code;
/** Two transactions inserted one id; the later one fails once the earlier commits. */
export const UNIQUE_VIOLATION = "23505";
export const DEADLOCK = "40P01";
