#!/usr/bin/env node
// Colors only on a terminal: picocolors would also turn them on under CI, into pipes and files.
if (!process.stdout.isTTY && !process.stderr.isTTY && !process.env.FORCE_COLOR) process.env.NO_COLOR = "1";

// The CLI is TypeScript; tsx registers a loader so no separate build step is needed.
const { register } = await import("tsx/esm/api");
register();
await import("../cli/main.ts");
