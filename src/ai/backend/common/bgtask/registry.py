"""Task handlers by name: what a node can run, resume or adopt.

A handler is registered under a stable name with a pydantic model of its arguments (the
*manifest*). The manager stores the validated arguments as JSON with the task, so any node that
registered the same name can rebuild them and run the handler again after the owner crashed::

    registry = TaskRegistry()

    class PullArgs(BaseModel):
        image: str

    @registry.task("image_pull", PullArgs, resumable=True)
    async def pull(reporter: ProgressReporter, args: PullArgs) -> TaskResult: ...

Guarantees:
- a second handler under a taken name raises ``DuplicateTaskName``; arguments that do not
  validate raise ``InvalidTaskArgs`` naming each field
  [tests/bgtask/test_registry.py::test_duplicate_and_invalid_args].
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError

from ..exception import format_validation_errors
from .exceptions import DuplicateTaskName, InvalidTaskArgs, UnknownTaskName
from .types import TaskResult

if TYPE_CHECKING:
    from .reporter import ProgressReporter

__all__ = ("HandlerResult", "TaskDefinition", "TaskHandler", "TaskRegistry")

A = TypeVar("A", bound=BaseModel)

HandlerResult: TypeAlias = TaskResult | str | None
"""What a handler returns: a :class:`TaskResult`, a message, or nothing."""

TaskHandler: TypeAlias = Callable[["ProgressReporter", A], Awaitable[HandlerResult]]
"""``async def handler(reporter, args) -> TaskResult | str | None``."""


@dataclass(frozen=True, slots=True)
class TaskDefinition(Generic[A]):
    """A named handler, the model of its arguments, and whether it can be resumed elsewhere."""

    name: str
    args_model: type[A]
    handler: TaskHandler[A]
    resumable: bool = False
    """Whether another node may run the handler again after the owner was lost mid-run (it
    must be idempotent, or continue from ``ProgressReporter.last_checkpoint``)."""

    def validate(self, args: A | Mapping[str, Any] | None) -> A:
        """The arguments as a model instance; raises ``InvalidTaskArgs`` naming the fields."""
        if isinstance(args, self.args_model):
            return args
        try:
            if isinstance(args, BaseModel):
                return self.args_model.model_validate(args.model_dump())
            return self.args_model.model_validate(dict(args or {}))
        except ValidationError as exc:
            errors = format_validation_errors(exc.errors(include_url=False))
            fields = ", ".join(e["loc"] or "<root>" for e in errors)
            raise InvalidTaskArgs(
                f"arguments of background task {self.name!r} are invalid: {fields}",
                data={"task_name": self.name, "errors": errors},
            ) from exc


class TaskRegistry:
    """Task definitions by name; give the same registry to every node's manager."""

    def __init__(self) -> None:
        self._definitions: dict[str, TaskDefinition[Any]] = {}

    def register(
        self,
        name: str,
        args_model: type[A],
        handler: TaskHandler[A],
        *,
        resumable: bool = False,
    ) -> TaskDefinition[A]:
        """Register ``handler`` under ``name``; a taken name raises ``DuplicateTaskName``."""
        if not name:
            raise InvalidTaskArgs("a background task name must not be empty", data={"name": name})
        if name in self._definitions:
            raise DuplicateTaskName(
                f"background task name {name!r} is already registered "
                f"({_qualname(self._definitions[name].handler)})",
                data={"task_name": name},
            )
        definition = TaskDefinition(name, args_model, handler, resumable)
        self._definitions[name] = definition
        return definition

    def task(
        self, name: str, args_model: type[A], *, resumable: bool = False
    ) -> Callable[[TaskHandler[A]], TaskHandler[A]]:
        """Decorator form of :meth:`register`."""

        def decorate(handler: TaskHandler[A]) -> TaskHandler[A]:
            self.register(name, args_model, handler, resumable=resumable)
            return handler

        return decorate

    def get(self, name: str) -> TaskDefinition[Any] | None:
        """The definition registered as ``name``, or ``None``."""
        return self._definitions.get(name)

    def resolve(self, name: str) -> TaskDefinition[Any]:
        """Like :meth:`get`; an unknown name raises ``UnknownTaskName``."""
        found = self._definitions.get(name)
        if found is None:
            raise UnknownTaskName(
                f"no background task handler is registered as {name!r}",
                data={"task_name": name},
            )
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[TaskDefinition[Any]]:
        return iter(list(self._definitions.values()))

    def __len__(self) -> int:
        return len(self._definitions)


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
