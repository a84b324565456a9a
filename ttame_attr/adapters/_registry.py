"""Registry of backbone adapters: register by decorator, look up by name, pick automatically."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from ttame_attr.adapters._base import BackboneAdapter
from ttame_attr.adapters._nested import NestedAdapter, find_backbone

__all__ = ["get_adapter", "list_adapters", "register_adapter", "resolve_adapter", "unregister_adapter"]

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type[BackboneAdapter]] = {}
_PRIORITY: dict[str, int] = {}

A = TypeVar("A", bound=type[BackboneAdapter])


def register_adapter(name: str, *, priority: int = 0) -> Callable[[A], A]:
    """Class decorator that registers a :class:`BackboneAdapter` under ``name``.

    Args:
        name: the name users pass as ``TTAME(model, adapter=name)``.
        priority: automatic selection tries adapters from the highest priority down and takes the
            first whose ``matches(model)`` is true. The built-in ``cnn`` adapter, which matches
            every model, has the lowest priority (-100).

    Raises:
        ValueError: if ``name`` is already registered.
        TypeError: if ``name`` is not a non-empty string, or the decorated object is not a
            ``BackboneAdapter`` subclass.

    Example:
        >>> from ttame_attr import BackboneAdapter, register_adapter, list_adapters
        >>> @register_adapter("my_net")
        ... class MyNetAdapter(BackboneAdapter):
        ...     @classmethod
        ...     def matches(cls, model):
        ...         return type(model).__name__ == "MyNet"
        ...     def default_layers(self, input_size):
        ...         return ["stage3", "stage4"]
        >>> "my_net" in list_adapters()
        True
        >>> from ttame_attr.adapters import unregister_adapter
        >>> unregister_adapter("my_net")
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_adapter: `name` must be a non-empty string, got {name!r}.")

    def decorator(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, BackboneAdapter)):
            raise TypeError(f"register_adapter({name!r}): expected a subclass of BackboneAdapter, "
                            f"got {cls!r}.")
        if name in _REGISTRY:
            raise ValueError(
                f"register_adapter: an adapter named {name!r} is already registered "
                f"({_REGISTRY[name].__qualname__}). Choose another name, or call "
                f"ttame_attr.adapters.unregister_adapter({name!r}) first.")
        cls.name = name
        _REGISTRY[name], _PRIORITY[name] = cls, priority
        return cls

    return decorator


def unregister_adapter(name: str) -> None:
    """Remove the adapter registered under ``name``.

    Raises:
        ValueError: if no adapter has that name.
    """
    get_adapter(name)
    del _REGISTRY[name], _PRIORITY[name]


def list_adapters() -> list[str]:
    """Names of the registered adapters, in the order automatic selection tries them."""
    return sorted(_REGISTRY, key=lambda n: -_PRIORITY[n])


def get_adapter(name: str) -> type[BackboneAdapter]:
    """The adapter class registered under ``name``.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"adapter: unknown adapter {name!r}; registered adapters are "
            f"{', '.join(map(repr, list_adapters()))}.{hint} Register your own with "
            "@ttame_attr.register_adapter(name).") from None


def resolve_adapter(model: nn.Module,
                    adapter: str | BackboneAdapter | type[BackboneAdapter] | None) -> BackboneAdapter:
    """Turn the ``adapter`` argument of :class:`~ttame_attr.TTAME` into an adapter bound to ``model``.

    A model wrapped in another module (a normalising ``forward``, ``nn.Sequential``, a
    LightningModule-style holder) is read through its backbone: the torchvision, timm or
    transformers classifier inside it, or the shallowest submodule a specific adapter matches
    (:func:`~ttame_attr.adapters.find_backbone`); the layer names then carry the wrapper's prefix.

    Args:
        model: the model to bind the adapter to.
        adapter: ``None`` (the first registered adapter, by priority, that matches the backbone), a
            registered name, a :class:`BackboneAdapter` subclass, or an instance bound to ``model``.

    Returns:
        The adapter instance.

    Raises:
        ValueError: for an unknown name or an instance bound to another model.
        TypeError: for any other ``adapter``.
    """
    if isinstance(adapter, BackboneAdapter):
        if adapter.model is not model:
            raise ValueError(
                "adapter: the BackboneAdapter instance is bound to another model; pass the adapter "
                "class or its registered name instead.")
        return adapter
    if adapter is None:
        specific = [_REGISTRY[n] for n in list_adapters() if n != "cnn"]
        backbone, prefix = find_backbone(model, lambda m: any(cls.matches(m) for cls in specific))
        cls = next(_REGISTRY[n] for n in list_adapters() if _REGISTRY[n].matches(backbone))
    elif isinstance(adapter, str) or (isinstance(adapter, type) and issubclass(adapter, BackboneAdapter)):
        cls = get_adapter(adapter) if isinstance(adapter, str) else adapter
        backbone, prefix = find_backbone(model, cls.matches)
    else:
        raise TypeError(
            "adapter: expected None, a registered name "
            f"({', '.join(map(repr, list_adapters()))}), a BackboneAdapter subclass or instance, "
            f"got {type(adapter).__name__}.")
    bound = cls(backbone)
    if prefix:
        logger.info("TTAME: reading %s inside %s at %r with the %r adapter", type(backbone).__name__,
                    type(model).__name__, prefix, cls.name)
        return NestedAdapter(model, bound, prefix)
    logger.info("TTAME: using the %r adapter for %s", cls.name, type(model).__name__)
    return bound
