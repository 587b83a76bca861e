"""The one way to list an activity class's activities: every method carrying an
`@activity.defn`, bound to the instance the worker injected with its resources.

A method of the interface (models/activity_api.py) is never registered in place of an
implementation: the interfaces are abstract, and an override that lost its `@activity.defn`
or names another activity type is refused here, so workflows never call a name no worker
serves."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from temporalio import activity

from models import activity_api

DEFINITION = "__temporal_activity_definition"  # what @activity.defn sets on a function


def defined_name(fn: object) -> str | None:
    defn = getattr(fn, DEFINITION, None)
    return defn.name if isinstance(defn, activity._Definition) else None


def activities_of(impl: object) -> list[Callable[..., Any]]:
    """The activities of `impl` (bound methods), in name order."""
    cls = type(impl)
    out: list[Callable[..., Any]] = []
    for attr in sorted(a for a in dir(cls) if not a.startswith("__")):
        fn = inspect.getattr_static(cls, attr)
        owner = next(c for c in cls.__mro__ if attr in vars(c))
        # the interface declaring `attr` as an activity, and that activity's name
        interfaces = [c for c in cls.__mro__ if c.__module__ == activity_api.__name__ and attr in vars(c)]
        wanted = defined_name(vars(interfaces[0])[attr]) if interfaces else None
        if owner.__module__ == activity_api.__name__ and wanted is not None:
            raise TypeError(f"{cls.__name__} does not implement activity {wanted!r} of {owner.__name__}")
        name = defined_name(fn)
        if wanted is not None and name != wanted:
            raise TypeError(f"{cls.__name__}.{attr} implements activity {wanted!r} of {interfaces[0].__name__} "
                            f"but is registered as {name!r}: give it @activity.defn(name={wanted!r})")
        if name is not None:
            out.append(getattr(impl, attr))
    return out
