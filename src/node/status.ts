/** A node agent's connection status, as a typed union an application can switch on. */
export type AgentStatus =
  | { state: "idle" }
  | { state: "enrolling"; hub: string }
  | { state: "connecting"; hub: string; attempt: number }
  | { state: "online"; hub: string; nodeId: string }
  | { state: "offline"; reason: string; retryInMs: number }
  | { state: "stopping" }
  | { state: "stopped" };

/** Holds the latest status and lets any number of readers follow it with `for await`. */
export class StatusFeed<S> {
  private current: S;
  private waiters: ((s: S) => void)[] = [];
  private done = false;

  constructor(initial: S) {
    this.current = initial;
  }

  get value(): S {
    return this.current;
  }

  set(s: S, final = false): void {
    this.current = s;
    this.done = final;
    const w = this.waiters;
    this.waiters = [];
    for (const cb of w) cb(s);
  }

  /** Yields the current status, then every change, until the final one. */
  async *follow(): AsyncGenerator<S> {
    let s = this.current;
    yield s;
    while (!this.done) {
      s = await new Promise<S>((res) => this.waiters.push(res));
      yield s;
    }
  }
}
