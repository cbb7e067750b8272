"""What determines a result, as one digest: the code that computes it and the values it reads.

A stored result must be served only when nothing it depends on has changed, and must not be
thrown away when something unrelated changes (an edit of the site checker must not cost hours
of recompute at ``full``). :func:`fingerprint` therefore walks the *compute function itself*:

- its source (parsed, so comments and docstrings do not count), and transitively the source of
  every function and class of the notebook (``__main__``) or of this package whose name it
  references - a model's ``forward``, the training function's body, the library's ``fit``;
- the values it closes over or reads as globals (hyper-parameters, dicts of settings);
- data tensors by content (SHA-256 of their bytes), so the data's identity is part of the key.

Functions of other packages (torch, numpy) are recorded by name: their behaviour is tied to
the installed versions, which the provenance records and ``make verify`` re-checks.
"""
from __future__ import annotations

import ast
import dataclasses
import dis
import hashlib
import inspect
import textwrap
import types

import numpy as np
import torch

_PROJECT_MODULES = ("__main__", "repro")
# Packages whose objects cannot change a result: a progress bar (tqdm.auto is one class in a kernel and
# another in a plain process, which must not give a notebook and a script two keys for one result).
_NOT_INPUTS = ("tqdm",)
_tensor_digests: dict[tuple, str] = {}


def is_project(obj) -> bool:
    """True for functions, classes and modules of the notebook or of this package."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None) or ""
    return name == "__main__" or name == "repro" or name.startswith("repro.")


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (memoized while the tensor is unchanged)."""
    memo = (id(t), t.data_ptr(), t._version, tuple(t.shape), str(t.dtype))
    if memo not in _tensor_digests:
        data = t.detach().contiguous().cpu()
        if data.dtype == torch.bfloat16:
            data = data.float()
        h = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
        h.update(data.numpy().tobytes())
        _tensor_digests[memo] = h.hexdigest()
    return _tensor_digests[memo]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_text(fn: types.FunctionType) -> str:
    """A function's code as a normalized AST dump (comments, docstrings, layout ignored).

    A lambda is keyed by the lambda expressions on its first line, not by the whole statement
    around it; where the source cannot be read, by its bytecode and constants.
    """
    code = fn.__code__
    try:
        lines, first = inspect.getsourcelines(fn)
        source = textwrap.dedent("".join(lines))
        tree = ast.parse(source)
        if fn.__name__ == "<lambda>":
            lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)
                       and n.lineno == code.co_firstlineno - first + 1]
            return "".join(ast.dump(n) for n in lambdas) or ast.dump(tree)
        return ast.dump(_strip_docstrings(tree))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return repr((code.co_code, code.co_consts, code.co_names))


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _global_names(code: types.CodeType) -> set[str]:
    """The names a function (with its lambdas and comprehensions) reads as globals.

    Only LOAD_GLOBAL / LOAD_NAME count: an attribute ``self.weights`` must not pull an unrelated
    notebook global called ``weights`` into the key.
    """
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


class _Walker:
    def __init__(self):
        self.parts: dict[int, tuple[str, str]] = {}  # id -> (qualified name, digest of its description)
        self.where: dict[int, str] = {}  # id -> module.qualname, for people reading a sidecar
        self.seen: set[int] = set()

    # -- values
    def value(self, obj, depth: int = 0) -> str:
        """A stable text for a value (recursing into containers, hashing tensors)."""
        if depth > 20:
            return "<deep>"
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            return repr(obj)
        if isinstance(obj, (torch.dtype, torch.device)):
            return f"{type(obj).__name__}({str(obj).split(':')[0]})"
        if isinstance(obj, torch.Tensor):
            return f"tensor:{tensor_digest(obj)}"
        if isinstance(obj, np.ndarray):
            return f"ndarray:{obj.dtype}{obj.shape}:{hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}"
        if isinstance(obj, np.generic):
            return repr(obj.item())
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [self.value(v, depth + 1) for v in obj]
            return f"{type(obj).__name__}[{','.join(sorted(items) if isinstance(obj, (set, frozenset)) else items)}]"
        if isinstance(obj, dict):
            return "{" + ",".join(f"{self.value(k, depth + 1)}:{self.value(v, depth + 1)}"
                                  for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0]))) + "}"
        if type(obj).__name__ == "Settings" and is_project(type(obj)):
            return f"Settings(device={obj.device.type})"  # paths and profile are not inputs of a result
        if isinstance(obj, torch.nn.Module):
            self.add(type(obj))
            return f"{type(obj).__qualname__}(" + ",".join(
                f"{k}={tensor_digest(v)}" for k, v in obj.state_dict().items()) + ")"
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return f"{type(obj).__qualname__}(" + ",".join(
                f"{f.name}={self.value(getattr(obj, f.name), depth + 1)}" for f in dataclasses.fields(obj)) + ")"
        if callable(obj) or isinstance(obj, (type, types.ModuleType)):
            return self.add(obj)
        return f"<{type(obj).__module__}.{type(obj).__qualname__}>"

    # -- code
    def add(self, obj) -> str:
        """Record a function, class or module; return the name it is referred to by."""
        if isinstance(obj, types.MethodType):
            return self.add(obj.__func__)
        if isinstance(obj, (staticmethod, classmethod)):
            return self.add(obj.__func__)
        if isinstance(obj, property):
            return ",".join(self.add(f) for f in (obj.fget, obj.fset) if f is not None)
        if hasattr(obj, "func") and hasattr(obj, "args") and hasattr(obj, "keywords"):  # functools.partial
            return (f"partial({self.add(obj.func)},{self.value(obj.args)},{self.value(obj.keywords)})")
        qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", "?"))
        if isinstance(obj, types.ModuleType):
            return "module:project" if is_project(obj) else f"module:{obj.__name__}"
        if not is_project(obj):
            return f"{getattr(obj, '__module__', '?')}.{qualname}"
        # Project code is named without its module: moving a function to another module (a layout
        # change) keeps the key; editing it does not.
        name = qualname
        if id(obj) in self.seen:
            return name
        self.seen.add(id(obj))
        self.where[id(obj)] = f"{getattr(obj, '__module__', '?')}.{qualname}"
        if isinstance(obj, type):
            members = []
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("__") and attr not in ("__init__", "__call__", "__post_init__"):
                    continue
                members.append(f"{attr}={self.value(member)}")
            bases = [self.add(b) for b in obj.__bases__]
            self.parts[id(obj)] = (name, hashlib.sha256(f"class {bases} {members}".encode()).hexdigest())
            return name
        if isinstance(obj, types.FunctionType):
            self.parts[id(obj)] = (name, "pending")
            text = [code_text(obj)]
            for label, values in (("defaults", obj.__defaults__), ("kwdefaults", obj.__kwdefaults__)):
                if values:
                    text.append(f"{label}={self.value(values)}")
            if obj.__closure__:
                for var, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                    try:
                        text.append(f"closure {var}={self.value(cell.cell_contents)}")
                    except ValueError:  # an empty cell
                        text.append(f"closure {var}=<empty>")
            text.extend(self._globals(obj))
            self.parts[id(obj)] = (name, hashlib.sha256("\n".join(text).encode()).hexdigest())
            return name
        return name

    def _globals(self, fn: types.FunctionType) -> list[str]:
        """The globals a function reads: project code recursively, plain values by content."""
        names = sorted(_names(fn.__code__))  # with attribute names: ``repro.fit`` reaches ``fit``
        out = []
        for n in sorted(_global_names(fn.__code__)):
            if n not in fn.__globals__:
                continue
            value = fn.__globals__[n]
            if (getattr(value, "__module__", None) or "").split(".")[0] in _NOT_INPUTS:
                continue
            if isinstance(value, types.ModuleType):
                if is_project(value):
                    # module.attr: co_names holds the attribute names too; follow the ones it has.
                    for attr in names:
                        member = getattr(value, attr, None)
                        if member is not None and not isinstance(member, types.ModuleType) and \
                                (isinstance(member, type) or callable(member)) and is_project(member):
                            out.append(f"{n}.{attr}->{self.add(member)}")
                continue
            out.append(f"global {n}={self.value(value)}")
        return out


def fingerprint(*objects) -> str:
    """Digest of everything the given compute functions and values depend on (see module doc)."""
    walker = _Walker()
    roots = [walker.value(obj) for obj in objects]
    text = "\n".join(roots + sorted(f"{name}:{digest}" for name, digest in walker.parts.values()))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def dependencies(*objects) -> dict[str, str]:
    """The project functions and classes a fingerprint covers, each with its own digest.

    The store's sidecar keeps them, so that a full run can tell *before it starts* whether a
    stored entry was made with today's library code (:func:`part_digest`).
    """
    walker = _Walker()
    for obj in objects:
        walker.value(obj)
    return dict(sorted((walker.where[i], walker.parts[i][1]) for i in walker.where if i in walker.parts))


def part_digest(obj) -> str:
    """The digest one function or class contributes to a fingerprint (its own code and values)."""
    walker = _Walker()
    walker.add(obj)
    return walker.parts[id(obj)][1]


