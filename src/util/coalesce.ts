/**
 * Runs `fn` when triggered; triggers that arrive while it runs fold into one more run afterwards. This is
 * how a hub batches work across nodes: every wake-up during a claim becomes one next claim, not many.
 */
export class Coalesced {
  private running = false;
  private again = false;
  private readonly fn: () => Promise<void>;
  private readonly onError: (e: unknown) => void;

  constructor(fn: () => Promise<void>, onError: (e: unknown) => void) {
    this.fn = fn;
    this.onError = onError;
  }

  trigger(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.fn();
      } catch (e) {
        this.onError(e);
      }
    } while (this.again);
    this.running = false;
  }
}
