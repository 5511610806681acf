// Preloaded with `node --require test/peak-rss.cjs …` by the RSS test: when the process exits, it writes
// its peak resident set size (getrusage's ru_maxrss, the kernel's VmHWM) to stderr as one last line.
const { writeSync } = require("node:fs");

process.on("exit", () => {
  writeSync(2, `peak_rss_bytes ${process.resourceUsage().maxRSS * 1024}\n`);
});
