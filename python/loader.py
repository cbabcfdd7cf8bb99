"""The SKILLS loader: turns core plugins into the ``aigis`` namespace.

One piece of code serves both places the core lives: central's embedded
interpreter (the real core) and an internal-local plugin's own process (the
copied core). It is stdlib-only and is embedded into the binaries as text,
so it imports nothing of ours.

For each core plugin the loader imports ``AIGIS/AIGIS.core``, reads
``SKILLS`` (dotted names into that module) and exposes each at the same
dotted path under the root namespace, merging intermediate namespaces across
plugins. Validation is complete before anything is inserted, so a plugin
that fails exposes nothing. Callables that take a ``logger`` keyword (or
``**kwargs``) are wrapped to receive the plugin's logger; that is decided
once, from the signature, at load time.

``Core.resolve`` is the reach rule of the AigisProxy: a path from a plugin
may reach the objects named in ``SKILLS`` and, inside an exposed module or
class, what that plugin's own files define (a module whose file lies under
its ``ENTRYPOINT``, a function or class whose ``__module__`` is one of
those), never another module, a builtin, or a method of a value.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import os
import sys
import traceback
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["Core", "SkillError", "NotExposed", "plugin_logger"]


class SkillError(Exception):
    """A core plugin could not be loaded; the message is for the operator."""


def NotExposed(path: str, why: str) -> AttributeError:
    """A proxy path reaches something no plugin exposes: to the plugin it is
    an AttributeError, as a missing attribute is in a local call."""
    return AttributeError("aigis.%s is not exposed: %s" % (path, why))


#: Plain values a path may end at (their attributes are never reachable).
_VALUE_TYPES = (str, bytes, int, float, complex, bool, type(None), tuple, list, dict,
                set, frozenset)


def plugin_logger(plugin: str, handler: logging.Handler) -> logging.Logger:
    """The logger of one plugin: records go to ``handler`` only."""
    logger = logging.getLogger("aigis.plugin." + plugin)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    return logger


def _wants_logger(obj: Any) -> bool:
    """True when calling ``obj(logger=...)`` is accepted by its signature."""
    if not callable(obj) or isinstance(obj, type):
        return False
    import inspect  # here: a proxied plugin's shim loads this file without needing it
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if p.name == "logger" and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            return True
    return False


def _with_logger(func: Callable[..., Any], logger: logging.Logger) -> Callable[..., Any]:
    """``func`` with ``logger=`` bound; a caller's own ``logger=`` still wins.

    ``functools.partial`` does the keyword merge in C, which keeps the
    per-call overhead of the wrapper small (see bench/skill_call.py).
    """
    skill = functools.partial(func, logger=logger)
    functools.update_wrapper(skill, func)
    return skill


class _Plugin:
    def __init__(self, name: str, entrypoint: str, core_file: str,
                 module: types.ModuleType, names: List[str]) -> None:
        self.name = name
        self.entrypoint = entrypoint
        self.core_file = core_file
        self.module = module
        self.names = names
        self.own_dir = _own_dir(entrypoint, core_file)
        self._own: Dict[str, bool] = {}
        self.logger: Optional[logging.Logger] = None
        self._wrapped: Dict[Any, Any] = {}

    def with_logger(self, value: Any) -> Any:
        """A callable reached inside an exposed module or class gets the
        plugin's logger like an exposed skill does (decided once per
        callable, from its signature)."""
        if self.logger is None or isinstance(value, type) or not callable(value):
            return value
        try:
            return self._wrapped[value]
        except (KeyError, TypeError):
            pass
        wrapped = _with_logger(value, self.logger) if _wants_logger(value) else value
        try:
            self._wrapped[value] = wrapped
        except TypeError:  # an unhashable callable: decided again next time
            pass
        return wrapped

    # -- what this plugin's own files define ------------------------------
    def owns_module(self, module: Any) -> bool:
        """``module`` is AIGIS.core or a module whose file is under ENTRYPOINT
        (installed packages there, e.g. a venv, do not count)."""
        if module is self.module:
            return True
        if not isinstance(module, types.ModuleType) or self.own_dir is None:
            return False
        where = getattr(module, "__file__", None)
        if where is None:
            paths = list(getattr(module, "__path__", None) or [])
            where = paths[0] if len(paths) == 1 else None
        if not isinstance(where, str):
            return False
        own = self._own.get(where)
        if own is None:
            real = os.path.realpath(where)
            own = _is_under(real, self.own_dir) and not any(
                part in ("site-packages", "dist-packages")
                for part in os.path.relpath(real, self.own_dir).split(os.sep))
            self._own[where] = own
        return own

    def owns_name(self, module_name: Any) -> bool:
        return isinstance(module_name, str) and self.owns_module(sys.modules.get(module_name))

    def defines(self, value: Any) -> bool:
        """``value`` may be the end of a path: defined in this plugin's files,
        or a plain value (a constant)."""
        if isinstance(value, types.ModuleType):
            return self.owns_module(value)
        if isinstance(value, types.MethodType):
            return isinstance(value.__self__, type) and self.defines(value.__func__)
        if isinstance(value, type) or callable(value):
            return self.owns_name(getattr(value, "__module__", None))
        if type(value) in _VALUE_TYPES:
            return True
        return self.owns_name(getattr(type(value), "__module__", None))

    def attribute(self, obj: Any, part: str, path: str) -> Any:
        """``obj.part`` if the reach rule allows it (see the module doc)."""
        if isinstance(obj, types.ModuleType) and self.owns_module(obj):
            if part not in vars(obj):
                raise NotExposed(path, "%s has no attribute %r" % (obj.__name__, part))
            value = vars(obj)[part]
        elif isinstance(obj, type) and self.owns_name(obj.__module__):
            owner = next((k for k in obj.__mro__ if part in vars(k)), None)
            if owner is None:
                raise NotExposed(path, "%s has no attribute %r" % (obj.__name__, part))
            if not self.owns_name(owner.__module__):
                raise NotExposed(path, "%r is inherited from %s.%s, not defined by `%s`"
                                 % (part, owner.__module__, owner.__qualname__, self.name))
            value = getattr(obj, part)
        else:
            raise NotExposed(path, "only the modules and classes of `%s`'s own files can "
                                   "be walked into, not %s" % (self.name, _kind(obj)))
        if not self.defines(value):
            raise NotExposed(path, "%r is %s, not something `%s` defines"
                             % (part, _kind(value), self.name))
        return value


def _own_dir(entrypoint: str, core_file: str) -> Optional[str]:
    """The real ENTRYPOINT if it lies inside the plugin's root, else None."""
    root = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(core_file))))
    own = os.path.realpath(entrypoint)
    return own if _is_under(own, root) else None


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _kind(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return "the module %s" % value.__name__
    if isinstance(value, type):
        return "the class %s.%s" % (value.__module__, value.__qualname__)
    if callable(value):
        return "%s from %s" % (type(value).__name__, getattr(value, "__module__", None)
                               or "a builtin")
    return "a %s value" % type(value).__name__


_MISSING = object()


class Core:
    """Owns the root namespace and remembers which plugin exposed what."""

    def __init__(self, root: types.ModuleType,
                 make_logger: Callable[[str], logging.Logger]) -> None:
        self.root = root
        self._make_logger = make_logger
        self._plugins: Dict[str, _Plugin] = {}
        self._owner: Dict[str, str] = {}  # dotted name -> plugin
        self._exposed: Dict[str, Any] = {}  # dotted name -> what was inserted
        # Exposed names a proxy path may name as they are (no part starts
        # with `_`): what most calls name, answered by one lookup.
        self._reachable: Dict[str, Any] = {}

    # -- queries ---------------------------------------------------------
    def plugins(self) -> List[str]:
        return list(self._plugins)

    def skills(self, plugin: str) -> List[str]:
        p = self._plugins.get(plugin)
        return list(p.names) if p else []

    # -- loading ---------------------------------------------------------
    def load(self, plugin: str, entrypoint: str, core_file: str) -> List[str]:
        """Imports ``core_file`` and exposes its SKILLS; returns their names."""
        if plugin in self._plugins:
            raise SkillError(f"core plugin `{plugin}` is already loaded")
        module = self._import(plugin, entrypoint, core_file)
        logger = self._make_logger(plugin)
        resolved = self._resolve(plugin, module, core_file)
        for name, _ in resolved:
            self._check_free(plugin, name)
        for name, value in resolved:
            if _wants_logger(value):
                value = _with_logger(value, logger)
            self._insert(name, value)
            self._owner[name] = plugin
            self._exposed[name] = value
            if not any(part.startswith("_") for part in name.split(".")):
                self._reachable[name] = value
        names = [n for n, _ in resolved]
        self._plugins[plugin] = _Plugin(plugin, entrypoint, core_file, module, names)
        self._plugins[plugin].logger = logger
        return names

    def _import(self, plugin: str, entrypoint: str, core_file: str) -> types.ModuleType:
        # Appended, as the original did: a plugin's files never shadow
        # installed packages (or another core plugin loaded before it).
        if entrypoint not in sys.path:
            sys.path.append(entrypoint)
        modname = "aigis_core_" + plugin.replace("-", "_")
        try:
            loader = importlib.machinery.SourceFileLoader(modname, core_file)
            spec = importlib.util.spec_from_loader(modname, loader)
            if spec is None:
                raise ImportError(f"cannot make a module spec for {core_file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            loader.exec_module(module)
        except BaseException as e:  # noqa: BLE001 - any failure is the plugin's
            sys.modules.pop(modname, None)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise SkillError(
                f"core plugin `{plugin}`: importing {core_file} failed:\n"
                + "".join(traceback.format_exception(type(e), e, e.__traceback__))
            ) from None
        return module

    def _resolve(self, plugin: str, module: types.ModuleType,
                 core_file: str) -> List[Tuple[str, Any]]:
        skills = getattr(module, "SKILLS", None)
        if skills is None:
            raise SkillError(f"core plugin `{plugin}`: {core_file} defines no SKILLS list")
        if not isinstance(skills, (list, tuple)):
            raise SkillError(
                f"core plugin `{plugin}`: SKILLS in {core_file} must be a list of "
                f"dotted names, not {type(skills).__name__}")
        out: List[Tuple[str, Any]] = []
        seen = set()
        for name in skills:
            if not isinstance(name, str) or not name or not all(
                    part.isidentifier() for part in name.split(".")):
                raise SkillError(
                    f"core plugin `{plugin}`: SKILLS entry {name!r} in {core_file} "
                    "is not a dotted name like 'module.function'")
            if name in seen:
                raise SkillError(f"core plugin `{plugin}`: SKILLS lists {name!r} twice")
            seen.add(name)
            value: Any = module
            for i, part in enumerate(name.split(".")):
                try:
                    value = getattr(value, part)
                except AttributeError:
                    where = ".".join(name.split(".")[:i]) or "AIGIS.core"
                    raise SkillError(
                        f"core plugin `{plugin}`: SKILLS entry {name!r} does not resolve: "
                        f"{where} has no attribute {part!r}") from None
            out.append((name, value))
        for a in seen:
            for b in seen:
                if b.startswith(a + "."):
                    raise SkillError(
                        f"core plugin `{plugin}`: SKILLS entries {a!r} and {b!r} overlap")
        return out

    def _check_free(self, plugin: str, name: str) -> None:
        owner = self._owner.get(name)
        if owner is None:
            for taken, other in self._owner.items():
                if taken.startswith(name + ".") or name.startswith(taken + "."):
                    owner, name = other, f"{name} (overlapping {taken})"
                    break
        if owner is None and "." not in name and hasattr(self.root, name):
            owner = "aigis itself"
        if owner is not None:
            raise SkillError(
                f"core plugin `{plugin}`: skill `aigis.{name}` is already exposed by "
                f"`{owner}`; a later plugin cannot replace it")

    def _insert(self, name: str, value: Any) -> None:
        parts = name.split(".")
        ns = self.root
        for i, part in enumerate(parts[:-1]):
            child = getattr(ns, part, None)
            if not isinstance(child, types.ModuleType):
                child = types.ModuleType(f"{self.root.__name__}.{'.'.join(parts[:i + 1])}")
                setattr(ns, part, child)
            ns = child
        setattr(ns, parts[-1], value)

    # -- the proxy's reach ---------------------------------------------------
    def resolve(self, path: str) -> Any:
        """What the proxy path ``aigis.<path>`` names, by the reach rule."""
        value = self._reachable.get(path, _MISSING) if isinstance(path, str) else _MISSING
        if value is not _MISSING:
            return value  # a skill itself, wrapped at load time
        parts = path.split(".") if isinstance(path, str) else []
        if not parts or not all(p.isidentifier() and not p.startswith("_") for p in parts):
            raise NotExposed(path, "a path is dotted names that do not start with `_`")
        for i in range(len(parts), 0, -1):
            name = ".".join(parts[:i])
            owner = self._owner.get(name)
            if owner is not None:
                break
        else:
            prefix = path + "."
            if any(n.startswith(prefix) for n in self._owner):
                raise NotExposed(path, "it is a namespace; call one of its skills")
            raise NotExposed(path, "no core plugin's SKILLS name it")
        plugin = self._plugins[owner]
        value = self._exposed[name]
        if i == len(parts):
            return value  # a skill itself, wrapped at load time
        for part in parts[i:]:
            value = plugin.attribute(value, part, path)
        return plugin.with_logger(value)

    # -- unloading -------------------------------------------------------
    def cleanup(self, plugin: str) -> None:
        """Runs the plugin's ``cleanup()``; failures are logged, not raised."""
        p = self._plugins.get(plugin)
        fn = getattr(p.module, "cleanup", None) if p else None
        if callable(fn):
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported on the plugin's logger
                self._make_logger(plugin).exception("cleanup() failed")

    def unload(self, plugin: str) -> None:
        p = self._plugins.get(plugin)
        if p is None:
            return
        self.cleanup(plugin)
        for name in p.names:
            self._remove(name)
            self._owner.pop(name, None)
            self._exposed.pop(name, None)
            self._reachable.pop(name, None)
        # Forget its modules, so that a reload runs the new code of every
        # file, not only of AIGIS.core.
        for modname, module in list(sys.modules.items()):
            if module is p.module or p.owns_module(module):
                sys.modules.pop(modname, None)
        del self._plugins[plugin]

    def reload(self, plugin: str) -> List[str]:
        p = self._plugins.get(plugin)
        if p is None:
            raise SkillError(f"core plugin `{plugin}` is not loaded")
        self.unload(plugin)
        return self.load(plugin, p.entrypoint, p.core_file)

    def _remove(self, name: str) -> None:
        parts = name.split(".")
        chain = [self.root]
        for part in parts[:-1]:
            nxt = getattr(chain[-1], part, None)
            if not isinstance(nxt, types.ModuleType):
                return
            chain.append(nxt)
        if hasattr(chain[-1], parts[-1]):
            delattr(chain[-1], parts[-1])
        # Drop intermediate namespaces that became empty.
        for i in range(len(parts) - 2, -1, -1):
            ns = chain[i + 1]
            if any(not k.startswith("__") for k in vars(ns)):
                break
            delattr(chain[i], parts[i])

    def shutdown(self) -> None:
        """Unloads every plugin, last loaded first (cleanup in reverse order)."""
        for plugin in reversed(list(self._plugins)):
            self.unload(plugin)


def describe(exc: Optional[BaseException] = None) -> str:
    """The traceback text of ``exc`` (or of the exception being handled)."""
    if exc is None:
        return traceback.format_exc()
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
