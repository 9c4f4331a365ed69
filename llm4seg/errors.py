"""One error hierarchy for the whole project.

Every error carries a message (what failed and the value seen) and a hint (the fix).
The CLI is the single place that prints them and exits 1.
"""

from __future__ import annotations


class Llm4SegError(Exception):
    """Base of every error the project raises on purpose."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(Llm4SegError):
    """An option or model setting has a value that cannot work."""


class LLMSourceError(Llm4SegError):
    """The pre-trained LLM layer could not be found, read or understood."""


class CheckpointError(Llm4SegError):
    """A checkpoint folder is missing, corrupt or foreign."""


class DataError(Llm4SegError):
    """A dataset folder or file is missing, unreadable or inconsistent."""


class TrainingError(Llm4SegError):
    """Training cannot go on (a non-finite loss, say); the last saved state is kept."""


class ExportError(Llm4SegError):
    """An export step failed or its result did not pass its parity gate."""


class BackendUnavailableError(Llm4SegError):
    """An optional package or device that a backend needs is missing."""


class InputSpecError(Llm4SegError):
    """An input tensor does not match what the model or artifact expects."""
