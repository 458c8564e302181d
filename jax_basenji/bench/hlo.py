"""What a compiled program does, read off its optimized HLO text: kernels, bytes moved, convolution kinds.

`compiled.as_text()` of a jitted function lists the entry computation's instructions; each one that is
not bookkeeping (parameter, tuple, get-tuple-element, bitcast, constant) is a kernel launch: a fusion, a
cuDNN or cuBLAS custom call, a copy. Its bytes moved are its operands read plus its result written, each
counted once: a lower bound on the memory traffic, the figure issue 23 tracks for the GPU train step
(`scripts/gpu_compile_report.py` compiles it for an H200 without a GPU). An operand that the kernel
reads only through slices (a fusion's parameter whose every use, through bitcasts, converts, copies
and reshapes, is a slice; a slice instruction's operand) counts the sliced elements only: BatchNorm's
shift estimate reads every 64th position of its input, not all of it. The same reading works on any
backend's HLO, so it is tested on CPU programs.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict

BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
         "f64": 8, "s64": 8, "u64": 8}
BOOKKEEPING = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant"}
_INSTRUCTION = re.compile(r"(?:ROOT )?%(\S+) = (\(.*?\)|\S+) ([\w-]+)\((.*?)\)(?:, |$)")
_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")
_COMMENT = re.compile(r"/\*.*?\*/")
_HEADER = re.compile(r"(%\S+) \(.*\) -> .* \{$")
# Ops through which a parameter's elements pass one to one: a slice after them still reads a part only.
_PASS_THROUGH = {"bitcast", "convert", "copy", "reshape"}


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    op: str  # fusion, custom-call, copy, ...
    kind: str  # fusion kind (kLoop, kInput, kOutput, kCustom) or custom-call target, else ""
    bytes: int  # operands + result
    shape: str  # result shape
    operands: tuple[str, ...]  # operand shapes
    dim_labels: str = ""  # convolutions: e.g. b01f_01io->b01f


def _arrays(shape: str):
    """(dtype, element count) of each array of an HLO shape (a tuple has several)."""
    for dtype, dims in _ARRAY.findall(shape):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        yield dtype, n


def array_bytes(shape: str) -> int:
    """Bytes of an HLO shape (a tuple's elements summed), e.g. `bf16[4,1024,768]{2,1,0}` -> 6,291,456."""
    return sum(n * BYTES[dtype] for dtype, n in _arrays(shape) if dtype in BYTES)


def _elements(shape: str) -> int:
    return sum(n for _, n in _arrays(shape))


def _instructions(lines):
    """(name, shape, op, operand names, line) of each instruction among `lines`."""
    for line in lines:
        m = _INSTRUCTION.match(line.strip())
        if m:
            name, shape, op, args = m.groups()
            # Operands past the fifth carry a position comment: `/*index=5*/%name`.
            names = (_COMMENT.sub("", a).strip() for a in args.split(","))
            yield name, shape, op, [a[1:] for a in names if a.startswith("%")], line


def _computations(hlo: str) -> dict[str, list[str]]:
    """{computation name: its instruction lines} of every non-entry computation (fusion bodies)."""
    out, name = {}, None
    for line in hlo.splitlines():
        if name is None:
            m = _HEADER.match(line)
            if m:
                name = m.group(1)[1:]
                out[name] = []
        elif line.startswith("}"):
            name = None
        else:
            out[name].append(line)
    return out


def _parameter_fractions(body: list[str]) -> dict[int, float]:
    """{parameter number: the fraction of its elements a fused computation reads}: below 1 only when
    every use of the parameter (through `_PASS_THROUGH` ops) is a slice."""
    shapes, ops, users, params = {}, {}, defaultdict(list), {}
    for name, shape, op, operands, line in _instructions(body):
        shapes[name], ops[name] = shape, op
        for o in operands:
            users[o].append(name)
        if op == "parameter":
            params[name] = int(re.search(r"parameter\((\d+)\)", line).group(1))

    def fraction(name: str) -> float:
        total = 0.0
        for user in users[name] or [None]:
            if user is not None and ops[user] == "slice":
                total += _elements(shapes[user]) / max(_elements(shapes[name]), 1)
            elif user is not None and ops[user] in _PASS_THROUGH:
                total += fraction(user)
            else:  # any other reader (or the root) reads it all
                return 1.0
        return min(total, 1.0)

    return {number: fraction(name) for name, number in params.items()}


def entry_kernels(hlo: str) -> list[Kernel]:
    """The kernels of the entry computation of optimized HLO text, in program order."""
    start = hlo.find("\nENTRY")
    if start < 0:
        raise ValueError("no ENTRY computation in this HLO text")
    bodies = _computations(hlo[:start])
    shapes: dict[str, str] = {}
    kernels = []
    for name, shape, op, names, line in _instructions(hlo[start:].splitlines()[1:]):
        shapes[name] = shape
        if op in BOOKKEEPING:
            continue
        operands = tuple(shapes.get(a, "") for a in names)
        read = [array_bytes(o) for o in operands]
        if op == "slice":
            read[0] = array_bytes(shape)
        called = re.search(r"calls=%([\w.\-]+)", line)
        if op == "fusion" and called and called.group(1) in bodies:
            fractions = _parameter_fractions(bodies[called.group(1)])
            read = [b * fractions.get(i, 1.0) for i, b in enumerate(read)]
        kind = re.search(r'kind=(\w+)|custom_call_target="([^"]+)"', line)
        labels = re.search(r"dim_labels=(\S+?)(?:,|$)", line)
        kernels.append(Kernel(name, op, next(g for g in kind.groups() if g) if kind else "",
                              round(sum(read)) + array_bytes(shape), shape, operands,
                              labels.group(1) if labels else ""))
    return kernels


def conv_channels(k: Kernel) -> tuple[int, int] | None:
    """(input, output) feature counts of a convolution kernel, from its dim_labels (`f` = features)."""
    m = re.fullmatch(r"(\w+)_(\w+)->(\w+)", k.dim_labels)
    if not m or not k.operands:
        return None

    def feature(shape: str, labels: str) -> int | None:
        arrays = _ARRAY.findall(shape)
        if not arrays:
            return None
        dims = [int(d) for d in arrays[0][1].split(",") if d]
        return dims[labels.index("f")] if len(dims) == len(labels) and "f" in labels else None

    out = feature(k.shape, m.group(3))
    return feature(k.operands[0], m.group(1)), out


def summary(kernels: list[Kernel]) -> dict:
    """Kernels, GB moved, GB and count per kind, convolution kinds, and the bf16 convolutions whose
    channel counts are not multiples of 8 (which cuDNN pads on every call)."""
    def kind_of(k: Kernel) -> str:
        return f"{k.op}:{k.kind}" if k.kind else k.op

    moved: Counter = Counter()
    count: Counter = Counter()
    for k in kernels:
        moved[kind_of(k)] += k.bytes
        count[kind_of(k)] += 1
    convs = [k for k in kernels if k.dim_labels]
    odd = [k.name for k in convs if k.shape.startswith(("bf16", "(bf16")) and
           any(c is not None and c % 8 for c in (conv_channels(k) or ()))]
    return {"kernels": len(kernels), "gb_moved": sum(k.bytes for k in kernels) / 1e9,
            "by_kind": {k: {"n": count[k], "gb": moved[k] / 1e9} for k in sorted(moved, key=lambda k: -moved[k])},
            "conv_kinds": dict(Counter(k.kind or k.op for k in convs)), "bf16_convs_not_multiple_of_8": odd}
