export { createProgram, runCli } from "./program.ts";
export type { GlobalOptions, Io } from "./io.ts";
