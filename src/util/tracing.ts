/**
 * W3C trace context (`traceparent`) and optional OpenTelemetry spans. `@opentelemetry/api` is an optional peer
 * dependency: it is loaded with a dynamic import the first time something asks (`loadOtel()`), and everything
 * here works without it (spans are then undefined and traceparents travel unchanged). Only the API is used: an
 * application that registers an SDK (a tracer provider and a context manager) gets fleetlink's spans in its
 * traces; one that does not pays for no-op calls only where a traceparent is present.
 *
 * Traceparents are read and written here, not with the SDK's propagator, so no global propagator needs to be
 * registered: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids not all zeros.
 */
import type * as OtelApi from "@opentelemetry/api";

/** Version 00, the only one the W3C recommendation defines; trace and parent ids must not be all zeros. */
export const TRACEPARENT_PATTERN = "^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$";
const TRACEPARENT = new RegExp(TRACEPARENT_PATTERN);

export const isTraceparent = (v: unknown): v is string => typeof v === "string" && TRACEPARENT.test(v);

type Otel = typeof OtelApi;
/** undefined: not tried yet; null: not installed. */
let api: Otel | null | undefined;
let loading: Promise<Otel | null> | undefined;

/** Loads `@opentelemetry/api` once; resolves null when it is not installed. Never rejects. */
export const loadOtel = (): Promise<Otel | null> => {
  loading ??= import("@opentelemetry/api").then(
    (m) => {
      // CommonJS interop: the named exports may sit on `default`.
      const mod = m as unknown as Otel & { default?: Otel };
      api = (mod.trace ? mod : mod.default) ?? null;
      return api;
    },
    () => {
      api = null;
      return null;
    },
  );
  return loading;
};

/** Whether loadOtel has finished (found the API or not): after that, `startSpan` needs no await. */
export const otelTried = (): boolean => api !== undefined;

/** The API if it has been loaded (see loadOtel), for hot paths that must not wait. */
export const otelLoaded = (): Otel | null => api ?? null;

const format = (sc: OtelApi.SpanContext): string =>
  `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;

/** The traceparent of the active OpenTelemetry context, if the API is loaded and a valid span is active. */
export const activeTraceparent = (): string | undefined => {
  if (!api) return undefined;
  const sc = api.trace.getSpanContext(api.context.active());
  return sc && api.trace.isSpanContextValid(sc) ? format(sc) : undefined;
};

const contextOf = (o: Otel, traceparent: string): OtelApi.Context => {
  const [, traceId, spanId, flags] = traceparent.split("-") as [string, string, string, string];
  return o.trace.setSpanContext(o.ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16),
    isRemote: true,
  });
};

/** A started span: its own traceparent (to hand on), and how to end it or run code inside it. */
export interface TraceSpan {
  /** This span's traceparent, or the parent's when the span records nothing (no SDK registered). */
  readonly traceparent: string | undefined;
  /** Ends the span; with an error, marks it failed first. */
  end(error?: unknown): void;
  /** Runs `fn` with this span as the active context (spans `fn` starts are its children). */
  run<T>(fn: () => T): T;
}

export interface SpanOptions {
  /** The parent, as a traceparent. Without one the active context is the parent when `orActive` is set. */
  parent?: string | null;
  /** Use the active context when no `parent` is given. (Default: false: no parent, no span) */
  orActive?: boolean;
  kind?: "client" | "server" | "producer" | "consumer" | "internal";
  attributes?: Record<string, string | number | boolean>;
  /** Start time, ms since the epoch. (Default: now) */
  startTime?: number;
}

const KINDS = { internal: 0, server: 1, client: 2, producer: 3, consumer: 4 } as const;

/**
 * Starts a span named `name` under `o.parent` (or the active context). Returns undefined when the API is not
 * loaded, or when there is no parent to hang it on (fleetlink never starts a trace of its own).
 */
export const startSpan = (name: string, o: SpanOptions): TraceSpan | undefined => {
  const otel = api;
  if (!otel) return undefined;
  const parent = o.parent
    ? isTraceparent(o.parent)
      ? contextOf(otel, o.parent)
      : undefined
    : o.orActive
      ? otel.context.active()
      : undefined;
  if (!parent || !otel.trace.getSpanContext(parent)) return undefined;
  const span = otel.trace.getTracer("fleetlink").startSpan(
    name,
    {
      kind: KINDS[o.kind ?? "internal"],
      ...(o.attributes ? { attributes: o.attributes } : {}),
      ...(o.startTime !== undefined ? { startTime: o.startTime } : {}),
    },
    parent,
  );
  const sc = span.spanContext();
  const inside = otel.trace.setSpan(parent, span);
  return {
    traceparent: otel.trace.isSpanContextValid(sc) ? format(sc) : (o.parent ?? undefined),
    end(error?: unknown) {
      if (error !== undefined) {
        span.setStatus({
          code: otel.SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : String(error),
        });
        if (error instanceof Error) span.recordException(error);
      }
      span.end();
    },
    run: (fn) => otel.context.with(inside, fn),
  };
};
