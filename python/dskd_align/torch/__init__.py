"""PyTorch layer: batches with exact teacher/student pairs, vocabulary maps, dual-space KD losses.

Data side: :class:`VocabMap` (byte-canonical overlap O and the t2s/s2t maps), :class:`DSKDCollator`
(rows to a padded :class:`DSKDBatch` with aligned prediction positions), :class:`OnPolicyBatcher`
(student generations to the same batch), :class:`ByteTables` and :class:`ByteKDCollator` (the
byte-level loss's tables and targets), :class:`SetTables` (those of ``byte_sets``),
``teacher_hidden_with_branches`` (the teacher's states for ``byte_sets(branch=True)``). Loss side:
the projectors (``init_t2s_projector``, :class:`StudentToTeacherProjector`,
``projector_param_group``) and :class:`DualSpaceKDLoss`.
"""

from dskd_align.torch.branch import teacher_hidden_with_branches
from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import ByteKDBatch, ByteKDCollator
from dskd_align.torch.collate import DSKDCollator
from dskd_align.torch.data import DSKDBatch, split_row
from dskd_align.torch.formats import RowFormatError, sharegpt_to_messages
from dskd_align.torch.heads import HiddenStateError
from dskd_align.torch.losses import DualSpaceKDLoss
from dskd_align.torch.objectives import LOSS_NAMES, build_loss
from dskd_align.torch.onpolicy import DecodedResponse, OnPolicyBatcher
from dskd_align.torch.precompute import precompute_alignments
from dskd_align.torch.projector import (
    StudentToTeacherProjector,
    init_t2s_projector,
    projector_param_group,
)
from dskd_align.torch.render import TemplateError, turn_end_token_id
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.set_targets import SetKDBatch
from dskd_align.torch.vocab import VocabMap, check_vocab_sizes, raw_string_overlap


def __getattr__(name: str) -> object:
    # The trainer and its config import transformers.Trainer and accelerate: load on first use.
    if name == "DSKDTrainer":
        from dskd_align.torch.trainer import DSKDTrainer

        return DSKDTrainer
    if name == "DSKDConfig":
        from dskd_align.torch.config import DSKDConfig

        return DSKDConfig
    raise AttributeError(f"module 'dskd_align.torch' has no attribute {name!r}")


__all__ = [
    "ByteKDBatch",
    "ByteKDCollator",
    "ByteTables",
    "DSKDBatch",
    "DSKDCollator",
    "DSKDConfig",
    "DSKDTrainer",
    "DecodedResponse",
    "DualSpaceKDLoss",
    "HiddenStateError",
    "LOSS_NAMES",
    "OnPolicyBatcher",
    "RowFormatError",
    "SetKDBatch",
    "SetTables",
    "StudentToTeacherProjector",
    "TemplateError",
    "VocabMap",
    "build_loss",
    "check_vocab_sizes",
    "init_t2s_projector",
    "precompute_alignments",
    "projector_param_group",
    "raw_string_overlap",
    "sharegpt_to_messages",
    "split_row",
    "teacher_hidden_with_branches",
    "turn_end_token_id",
]
