"""``fastbp lab``: classic results about training deep networks, reproduced in under a minute.

Each lab reruns the experiment behind one of the remedies fastbp teaches, on embedded or
generated data, and sets the publication's claim beside the numbers it measured::

    import fastbp as fb
    fb.lab.list()                      # {"glorot2010": "Glorot & Bengio (2010): ...", ...}
    result = fb.lab.run("he2015")      # a LabResult
    print(result)                      # claim, setup, measured numbers, checks, verdict
    result.reproduced                  # decided by the criteria printed with each check
    result.values                      # the measured numbers
    result.save_plots("he2015-plots")  # PNG files (needs matplotlib)

A lab whose claim does not hold at its settings says so ("not reproduced here: ..."); the
settings are the papers' where a minute allows, and each lab module's docstring states them.
"""

from __future__ import annotations

import builtins
from typing import Any

from . import glorot2010, he2015, neelakantan2015, pascanu2013, smith2017
from ._base import Check, LabResult

_LABS = {
    module.NAME: module for module in (glorot2010, he2015, neelakantan2015, pascanu2013, smith2017)
}

__all__ = ["Check", "LabResult", "list", "run"]


def list() -> dict[str, str]:  # noqa: A001  (the name the API promises: fb.lab.list())
    """The labs by name, each with a one-line description, in chronological order of the
    publications' claims as taught (initialisation, noise, clipping, learning rate)."""
    return {name: module.DESCRIPTION for name, module in _LABS.items()}


def run(name: str, **options: Any) -> LabResult:
    """Run the lab ``name`` and return its result.

    Parameters
    ----------
    name : str
        One of :func:`list`'s names.
    **options
        ``seed`` (int, default 0: the runs use seeds ``seed, seed + 1, ...``), ``quick``
        (bool, default False: reduced sizes that take seconds, used by the tests), and the
        lab's own sizes (``n_seeds``, ``epochs``, ``depth``, ``width``, ``lr``...; see the
        lab module's ``DEFAULTS`` and docstring).

    Returns
    -------
    LabResult
        ``str(result)`` is the printed report; ``result.reproduced`` the verdict;
        ``result.values`` the measured numbers; ``result.save_plots(folder)`` the figures.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {builtins.list(_LABS)}; got {name!r}")
    if name not in _LABS:
        raise ValueError(f"name must be one of {builtins.list(_LABS)}, got {name!r}")
    return _LABS[name].run(**options)
