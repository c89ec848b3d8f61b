export { buildServer } from "./server.ts";
export type { ServerDeps } from "./server.ts";
