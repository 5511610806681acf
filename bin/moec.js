#!/usr/bin/env node
// The CLI is TypeScript; tsx registers a loader so no separate build step is needed.
const { register } = await import("tsx/esm/api");
register();
await import("../cli/main.ts");
