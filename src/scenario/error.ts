/**
 * A mistake in a scenario file (not a syscall failure): an unknown key, a
 * value that cannot be read, a variable used before it is captured. The
 * message names the file line when it is known.
 */
export class ScenarioError extends Error {
  constructor(
    message: string,
    readonly line?: number,
  ) {
    super(message);
    this.name = "ScenarioError";
  }
}
