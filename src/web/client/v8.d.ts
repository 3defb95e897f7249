// The core calls Error.captureStackTrace (V8, also in current Firefox and
// Safari) only when KernelError.captureStacks is on; Node's types declare it,
// the DOM's do not.
interface ErrorConstructor {
  captureStackTrace(targetObject: object, constructorOpt?: object): void;
}
