/** A one-line progress bar on stderr (redrawn in place on a terminal, a line every 10% otherwise). */
export const progressBar = (label: string) => {
  const tty = process.stderr.isTTY;
  const t0 = Date.now();
  let lastTenth = -1;
  const mib = (b: number) => (b / 1048576).toFixed(1);
  return (done: number, total: number) => {
    const f = total > 0 ? Math.min(1, done / total) : 1;
    const rate = done / 1048576 / Math.max(0.001, (Date.now() - t0) / 1000);
    const bar = `${"#".repeat(Math.round(f * 30)).padEnd(30, "-")}`;
    const line = `${label} [${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} MiB ${rate.toFixed(1)} MiB/s`;
    if (tty) process.stderr.write(`\r${line}${f >= 1 ? "\n" : ""}`);
    else if (Math.floor(f * 10) > lastTenth) {
      lastTenth = Math.floor(f * 10);
      process.stderr.write(`${line}\n`);
    }
  };
};
