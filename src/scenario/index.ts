/**
 * src/scenario: scenario files (docs/scenario-format.md). parseScenario()
 * reads YAML into a Scenario; runScenario() boots a Machine, spawns the
 * processes and runs the steps with their expectations, through the public
 * API only (Process syscalls and m.debug).
 */
export { ScenarioError } from "./error.js";
export { bootMachine, spawnProcesses } from "./machine.js";
export { parseScenario } from "./parse.js";
export { RecordError, type RecordOptions, recordScenario } from "./record.js";
export { type RunOptions, type RunResult, runScenario, type StepResult } from "./run.js";
export { errnoLabel, NotModelledError, type Outcome } from "./steps.js";
export type { MachineSpec, ProcessSpec, Scenario, Step, StepKind } from "./types.js";
export { STEP_KINDS } from "./types.js";
