"""Typed errors: every failure a user can cause has its own class and a message saying what to do.

The CLI maps each class to an exit code, the WebUI shows the message, the API raises it.
"""

from __future__ import annotations


class FaceFuseError(Exception):
    """Base of every error facefuse raises on purpose."""

    exit_code = 1


class ParameterError(FaceFuseError, ValueError):
    """A parameter is out of range or of the wrong kind (never silently clamped)."""

    exit_code = 2


class ImageError(FaceFuseError):
    """An image could not be read, is not an image, or is outside the size limits."""

    exit_code = 3


class NoFaceError(FaceFuseError):
    """No usable face was found (or the requested face index does not exist)."""

    exit_code = 4


class BackendError(FaceFuseError):
    """A model file or an optional runtime is missing or broken."""

    exit_code = 5
