// Typed errors with the Python side's classes, messages and exit codes (facefuse/errors.py).
export class FaceFuseError extends Error {
  constructor(message) { super(message); this.name = new.target.name; }
  get exitCode() { return 1; }
}
export class ParameterError extends FaceFuseError { get exitCode() { return 2; } }
export class ImageError extends FaceFuseError { get exitCode() { return 3; } }
export class NoFaceError extends FaceFuseError { get exitCode() { return 4; } }
export class BackendError extends FaceFuseError { get exitCode() { return 5; } }
