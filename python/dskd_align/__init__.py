"""dskd-align: exact token alignment between two tokenizers, and dual-space KD on top of it.

``align(teacher_tok, student_tok, text)`` pairs the tokens of two tokenizations of one text that
cover exactly the same bytes (ALIGNMENT.md); ``Aligner`` caches the tokenizers and aligns batches
in the Rust core. The torch layer lives in ``dskd_align.torch`` (optional extra).
"""

from dskd_align._core import AlignmentError, CoreTokenizer
from dskd_align.aligner import Aligner, align, align_encodings, align_many
from dskd_align.alignment import Alignment, BatchAlignment
from dskd_align.tokenizers import load_core

__version__ = "0.1.0"

__all__ = [
    "Aligner",
    "Alignment",
    "AlignmentError",
    "BatchAlignment",
    "CoreTokenizer",
    "__version__",
    "align",
    "align_encodings",
    "align_many",
    "load_core",
]
