"""The arms of ``gap_closure.py``: the demo's main arms and the ablations (issue 9).

Each arm: name -> (student kind, loss name, options, student init). "cross" students use the
embedded SentencePiece-style tokenizer, "same" ones the teacher's; options go to ``build_loss``
except the bench's own (``gap_closure._loss``: ``projector``, ``gate``, ``skip_first``,
``trust_boundary``, ``lr``) and ``branch`` (the teacher's branch states are computed for it).
"""

from __future__ import annotations


def _sets(kind: str, **opts: object) -> tuple:
    """A ``byte_sets`` arm of a pretrained ``kind`` student with ``opts``."""
    return (kind, "byte_sets", opts, "pretrained")


def _branch(**opts: object) -> tuple:
    """A cross ``byte_sets`` arm with branches and ``opts``."""
    return _sets("cross", branch=True, **opts)


# name -> (student kind, loss name, options, student init)
MAIN = {
    "sft-cross": ("cross", "sft", {}, "pretrained"),
    "dskd-cross": ("cross", "dskd", {"tau": 2.0}, "pretrained"),
    "exact_kd-cross": ("cross", "exact_kd", {"tau": 1.0}, "pretrained"),
    "chunk_kd-cross": ("cross", "chunk_kd", {"tau": 1.0}, "pretrained"),
    "byte_kd-cross": ("cross", "byte_kd", {"alpha": 1 / 3}, "pretrained"),
    "byte_sets-cross": ("cross", "byte_sets", {"alpha": 0.5}, "pretrained"),
    "sft-same": ("same", "sft", {}, "pretrained"),
    "kd-same": ("same", "kd", {"tau": 1.0}, "pretrained"),
}
ABLATIONS = {
    "dskd-cross tau=1": ("cross", "dskd", {"tau": 1.0}, "pretrained"),
    "dskd-cross alpha=0.2": ("cross", "dskd", {"tau": 2.0, "alpha": 0.2}, "pretrained"),
    "dskd-cross student space only": ("cross", "dskd", {"teacher_space": False}, "pretrained"),
    "dskd-cross teacher space only": ("cross", "dskd", {"student_space": False}, "pretrained"),
    "dskd-cross no agreement gate": ("cross", "dskd", {"gate": False}, "pretrained"),
    "dskd-cross random projector": ("cross", "dskd", {"projector": "random"}, "pretrained"),
    "exact_kd-cross alpha=1/3": ("cross", "exact_kd", {"alpha": 1 / 3}, "pretrained"),
    "byte_kd-cross alpha=0.5": ("cross", "byte_kd", {"alpha": 0.5}, "pretrained"),
    "byte_kd-cross alpha=0.25": ("cross", "byte_kd", {"alpha": 0.25}, "pretrained"),
    "byte_kd-cross tau=2": ("cross", "byte_kd", {"alpha": 1 / 3, "tau": 2.0}, "pretrained"),
    "byte_kd-cross tau=0.5": ("cross", "byte_kd", {"alpha": 1 / 3, "tau": 0.5}, "pretrained"),
    "byte_kd-cross two-step crossing": (
        "cross",
        "byte_kd",
        {"alpha": 1 / 3, "crossing": "two_step"},
        "pretrained",
    ),
    "byte_kd-cross with crossing tokens": (
        "cross",
        "byte_kd",
        {"alpha": 1 / 3, "crossing": "one_step"},
        "pretrained",
    ),
    # Outcome classes scored on their consistent student-token sets (byte_sets.py).
    "byte_kd-cross sets": ("cross", "byte_kd_sets", {"alpha": 1 / 3}, "pretrained"),
    "byte_kd-cross sets skip": (
        "cross",
        "byte_kd_sets",
        {"alpha": 1 / 3, "crossing": "skip"},
        "pretrained",
    ),
    "byte_kd-cross sets alpha=0.5": ("cross", "byte_kd_sets", {"alpha": 0.5}, "pretrained"),
    # ... and conditioned on the student's own boundary (classes it rules out dropped).
    "byte_kd-cross sets+sb": (
        "cross",
        "byte_kd_sets",
        {"alpha": 1 / 3, "student_boundary": True},
        "pretrained",
    ),
    "byte_kd-cross sets+sb alpha=0.5": (
        "cross",
        "byte_kd_sets",
        {"alpha": 0.5, "student_boundary": True},
        "pretrained",
    ),
    "byte_kd-cross sb only alpha=0.5": (  # byte_kd's singleton targets, crossing skipped
        "cross",
        "byte_kd_sets",
        {"alpha": 0.5, "student_boundary": True, "sets": False, "crossing": "skip"},
        "pretrained",
    ),
    "byte_kd-cross tight sets+sb alpha=0.5": (  # next-token sets read with the teacher's boundary
        "cross",
        "byte_kd_sets",
        {"alpha": 0.5, "student_boundary": True, "tight": True},
        "pretrained",
    ),
    "byte_kd-cross tight sets+sb alpha=2/3": (
        "cross",
        "byte_kd_sets",
        {"alpha": 2 / 3, "student_boundary": True, "tight": True},
        "pretrained",
    ),
    "byte_kd-cross sets+sb alpha=2/3": (
        "cross",
        "byte_kd_sets",
        {"alpha": 2 / 3, "student_boundary": True},
        "pretrained",
    ),
    # The same losses with the teacher's tokenizer on both sides: how close to vanilla KD?
    "byte_kd-same": ("same", "byte_kd", {"alpha": 0.5}, "pretrained"),
    "byte_kd-same sets+sb": (
        "same",
        "byte_kd_sets",
        {"alpha": 0.5, "student_boundary": True},
        "pretrained",
    ),
    "byte_kd-same tight sets+sb": (
        "same",
        "byte_kd_sets",
        {"alpha": 0.5, "student_boundary": True, "tight": True},
        "pretrained",
    ),
    # The library's byte_sets (tight sets + student boundary, set_kd.py) at other settings.
    "byte_sets-cross alpha=2/3": ("cross", "byte_sets", {"alpha": 2 / 3}, "pretrained"),
    "byte_sets-cross alpha=0.4": ("cross", "byte_sets", {"alpha": 0.4}, "pretrained"),
    "byte_sets-cross skip": (
        "cross",
        "byte_sets",
        {"alpha": 0.5, "crossing": "skip"},
        "pretrained",
    ),
    "byte_sets-cross no sb": (
        "cross",
        "byte_sets",
        {"alpha": 0.5, "student_boundary": False},
        "pretrained",
    ),
    "byte_sets-cross tau=1.5": ("cross", "byte_sets", {"alpha": 0.5, "tau": 1.5}, "pretrained"),
    "byte_sets-cross tau=0.8": ("cross", "byte_sets", {"alpha": 0.5, "tau": 0.8}, "pretrained"),
    "byte_sets-cross tight ext": (
        "cross",
        "byte_sets",
        {"alpha": 0.5, "tight_extensions": True},
        "pretrained",
    ),
    "byte_sets-cross tight ext alpha=2/3": (
        "cross",
        "byte_sets",
        {"alpha": 2 / 3, "tight_extensions": True},
        "pretrained",
    ),
    "byte_sets-same": ("same", "byte_sets", {"alpha": 0.5}, "pretrained"),
    "byte_sets-same tight ext": (
        "same",
        "byte_sets",
        {"alpha": 0.5, "tight_extensions": True},
        "pretrained",
    ),
    # BENCHMARKS.md, "What limits byte_sets": KD without the first response token (byte_sets
    # has none); no student-boundary filter; shared boundaries: next-token outcomes only.
    "kd-same no first": ("same", "kd", {"tau": 1.0, "skip_first": True}, "pretrained"),
    "byte_sets-same no sb": ("same", "byte_sets", {"student_boundary": False}, "pretrained"),
    "byte_sets-cross trust": ("cross", "byte_sets", {"trust_boundary": True}, "pretrained"),
    # Targets inside a teacher token keep the "teacher token ends here" outcome (branch.py).
    "byte_sets-cross branch": ("cross", "byte_sets", {"branch": True}, "pretrained"),
    # The KD weight and temperature with branches (stop 17; alpha 0.5, tau 1 elsewhere).
    **{f"byte_sets-cross branch alpha={x}": _branch(alpha=x) for x in (0.4, 0.6, 0.7)},
    **{f"byte_sets-cross branch tau={x}": _branch(tau=x) for x in (0.8, 1.2)},
    # One tokenizer, the extensions of the token before dropped at shared boundaries.
    "byte_sets-same trust": ("same", "byte_sets", {"trust_boundary": True}, "pretrained"),
    # ... only where the student-boundary filter is off (the option unfiltered="teacher").
    "byte_sets-same unfiltered=teacher": _sets("same", unfiltered="teacher"),
    "byte_sets-cross branch unfiltered=teacher": _branch(unfiltered="teacher"),
    # From scratch a student needs the issue probe's learning rate (3e-3) to get anywhere.
    "sft-cross random init": ("cross", "sft", {"lr": 3e-3}, "random"),
    "dskd-cross random init": ("cross", "dskd", {"tau": 2.0, "lr": 3e-3}, "random"),
}
