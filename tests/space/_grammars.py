"""NePS's grammar-like spaces (its test suite's `GrammarLike` and `GrammarLikeAlt`),
written in jaxnas's language, with plain functions as the operators.

`S` picks one of six productions, four of them recursive (one with two recursive
children); `C` picks one of four, three recursive; `O` is one of three operations.
"""

from __future__ import annotations

import jaxnas as jn

R = jn.Resampled


def conv3(*args):
    return ("Conv2D-3",)


def conv1(*args):
    return ("Conv2D-1",)


def identity(*args):
    return ("Identity",)


def relu_conv_bn(*args):
    return ("ReLUConvBN",)


def sequential(*args):
    return ("Sequential", *args)


def _terminals():
    reluconvbn = jn.Operation(relu_conv_bn)
    o = jn.Categorical((jn.Operation(conv3), jn.Operation(conv1), jn.Operation(identity)))
    return reluconvbn, o


def grammar_like() -> dict:
    """The first form: each production an `Operation` of its own."""
    reluconvbn, o = _terminals()
    s = jn.ByName("S")
    c0 = jn.Operation(sequential, args=(R(o),))
    c1 = jn.Operation(sequential, args=(R(o), R(s), reluconvbn))
    c2 = jn.Operation(sequential, args=(R(o), R(s)))
    c3 = jn.Operation(sequential, args=(R(s),))
    c = jn.Categorical((R(c0), R(c1), R(c2), R(c3)))
    s0 = jn.Operation(sequential, args=(R(c),))
    s1 = jn.Operation(sequential, args=(reluconvbn,))
    s2 = jn.Operation(sequential, args=(R(s),))
    s3 = jn.Operation(sequential, args=(R(s), R(c)))
    s4 = jn.Operation(sequential, args=(R(o), R(o), R(o)))
    s5 = jn.Operation(sequential, args=(R(s), R(s), *[R(o)] * 6))
    return {"S": jn.Categorical((R(s0), R(s1), R(s2), R(s3), R(s4), R(s5)))}


def grammar_like_alt() -> dict:
    """The alternative form: one `Operation` per rule over a categorical of argument
    tuples."""
    reluconvbn, o = _terminals()
    s = jn.ByName("S")
    c_args = jn.Categorical(((R(o),), (R(o), R(s), reluconvbn), (R(o), R(s)), (R(s),)))
    c = jn.Operation(sequential, args=R(c_args))
    s_args = jn.Categorical(((R(c),), (reluconvbn,), (R(s),), (R(s), R(c)), (R(o),) * 3,
                             (R(s), R(s), *[R(o)] * 6)))
    return {"S": jn.Operation(sequential, args=R(s_args))}


# How many `S` each production of `S` refers to directly, and how many `C`; a `C` refers
# to one `S` in three of its four productions.
S_CHILDREN = ((0, 1), (0, 0), (1, 0), (1, 1), (0, 0), (2, 0))
C_HAS_S = (0, 1, 1, 1)
