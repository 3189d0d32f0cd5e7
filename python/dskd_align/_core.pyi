"""Type stubs for the Rust extension (checked by `python -m mypy.stubtest dskd_align._core`)."""

from collections.abc import Iterable
from typing import final

import numpy as np
import numpy.typing as npt

__all__ = ["AlignmentError", "CoreTokenizer", "align_encoded", "align_texts_flat"]

class AlignmentError(ValueError):
    """Bad input to the aligner: the message names the field and the fix."""

@final
class CoreTokenizer:
    """A tokenizer loaded from its tokenizer.json, with its token-to-bytes table."""

    def __new__(cls, json: str) -> CoreTokenizer: ...
    @property
    def vocab_size(self) -> int:
        """Vocabulary size with added tokens."""
    @property
    def table_size(self) -> int:
        """Highest token id + 1 (the size of the token-to-bytes table)."""
    def token_bytes(self, id: int) -> bytes | None:
        """The bytes token `id` stands for, or None when unknown."""
    @property
    def dropped_chars(self) -> str:
        """The characters its normalizer drops or turns into whitespace, of the non-whitespace
        droppable ones (controls, format characters, other default ignorables), each asked alone."""
    def is_special(self, id: int) -> bool:
        """Whether `id` is a special added token."""
    def encode(
        self, text: str, add_special_tokens: bool
    ) -> tuple[list[int], list[tuple[int, int]], list[bool]]:
        """(ids, byte offsets snapped to characters, special mask) as the core sees them."""

def align_texts_flat(
    teacher: CoreTokenizer,
    student: CoreTokenizer,
    texts: Iterable[str],
    add_special_tokens: bool = False,
    num_threads: int = 1,
) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.bool_]]:
    """Tokenizes every text with both tokenizers and aligns them; a dict of flat arrays."""

def align_encoded(
    text: str,
    teacher: tuple[
        list[int], list[tuple[int, int]], list[bool], list[bytes | None] | None, str | None
    ],
    student: tuple[
        list[int], list[tuple[int, int]], list[bool], list[bytes | None] | None, str | None
    ],
) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.bool_]]:
    """Aligns two encodings given as (ids, character offsets, special mask, token bytes or None,
    the characters the normalizer drops or None)."""
