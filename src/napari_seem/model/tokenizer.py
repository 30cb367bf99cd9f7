"""CLIP byte-level BPE tokenizer, written from the published algorithm.

Behaviour matches the HF ``CLIPTokenizer`` of ``openai/clip-vit-base-patch32`` when ``ftfy`` is
not installed (SEEM builds its tokenizer that way, with ``padding='max_length'``,
``truncation=True``, ``max_length=77``):

1. the literal special tokens ``<|startoftext|>`` / ``<|endoftext|>`` are split out first;
2. every other chunk is normalised like HF's ``BasicTokenizer(strip_accents=False,
   do_split_on_punc=False)``: control characters dropped, Unicode whitespace turned into spaces,
   CJK ideographs surrounded by spaces, NFC normalisation, whitespace split, lower case;
3. the CLIP regex splits words, digits and punctuation runs;
4. each piece is mapped byte -> printable unicode character and merged by BPE, with ``</w>``
   marking the end of a word;
5. ids are wrapped in BOS (49406) / EOS (49407), truncated to the context length (keeping EOS)
   and padded with EOS (49407); so ``argmax(ids)`` finds the first EOS.
"""

from __future__ import annotations

import gzip
import unicodedata
from functools import lru_cache
from importlib import resources
from os import PathLike
from typing import Iterable, Sequence

import regex
import torch

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
BOS_ID = 49406
EOS_ID = 49407
PAD_ID = EOS_ID  # HF CLIP pads with <|endoftext|>
CONTEXT_LENGTH = 77
END_OF_WORD = "</w>"

# Number of merges OpenAI's tokenizer uses: 49152 BPE vocab - 256 bytes - 2 specials.
_NUM_MERGES = 49152 - 256 - 2

# The CLIP pre-tokenisation pattern (contractions, letter runs, single digits, other runs).
_WORD_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_SPECIAL_PATTERN = regex.compile(r"(<\|startoftext\|>|<\|endoftext\|>)")

# CJK ideograph blocks that HF's BasicTokenizer isolates with spaces.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP table mapping each byte 0..255 to a printable unicode character.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to ``chr(256 + k)`` in
    increasing byte order. Dict insertion order is the vocabulary order of the 256 base tokens.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + k) for k, b in enumerate(extra)})
    return table


def _default_vocab_path():
    return resources.files("napari_seem.model").joinpath("assets").joinpath("bpe_simple_vocab_16e6.txt.gz")


def _read_merges(vocab_path) -> list[tuple[str, str]]:
    """First ``_NUM_MERGES`` merge rules (line 0 of the file is a version header)."""
    with (vocab_path.open("rb") if hasattr(vocab_path, "open") else open(vocab_path, "rb")) as fh:
        lines = gzip.decompress(fh.read()).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]


# ---------------------------------------------------------------- text normalisation (no ftfy)


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _clean_chars(text: str) -> str:
    """Drop NUL, U+FFFD and control/format chars; map whitespace to ' '; pad CJK with spaces."""
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            out.append(" ")
        elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
            continue
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    return "".join(out)


def normalize_text(text: str) -> str:
    """HF CLIP's no-ftfy text cleanup: cleaned, NFC, whitespace-collapsed, lower-cased."""
    text = unicodedata.normalize("NFC", _clean_chars(text))
    return " ".join(word.lower() for word in text.split())


# ---------------------------------------------------------------- tokenizer


class ClipTokenizer:
    """OpenAI CLIP BPE tokenizer (49408 ids), no external tokenizer libraries.

    ``encode`` gives the content ids of one text; calling the tokenizer on a list of texts gives
    fixed-length ``[n, context_length]`` id and attention-mask tensors, as SEEM feeds them to its
    language encoder.
    """

    def __init__(self, vocab_path: str | PathLike | None = None) -> None:
        path = _default_vocab_path() if vocab_path is None else vocab_path
        merges = _read_merges(path)
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        base = list(self.byte_encoder.values())
        tokens = base + [t + END_OF_WORD for t in base] + ["".join(m) for m in merges]
        tokens += [BOS_TOKEN, EOS_TOKEN]
        self.encoder: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.decoder: dict[int, str] = dict(enumerate(tokens))
        self.bpe_ranks: dict[tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self._cache: dict[str, tuple[str, ...]] = {}
        assert self.encoder[BOS_TOKEN] == BOS_ID and self.encoder[EOS_TOKEN] == EOS_ID

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    # ------------------------------------------------------------ BPE

    def bpe(self, piece: str) -> tuple[str, ...]:
        """BPE-merge one byte-encoded word; returns its tokens, the last ending in ``</w>``."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        parts = list(piece[:-1]) + [piece[-1] + END_OF_WORD]
        while len(parts) > 1:
            rank, pair = min((self.bpe_ranks.get(p, _NUM_MERGES), p) for p in zip(parts, parts[1:]))
            if rank == _NUM_MERGES:  # no known merge left
                break
            parts = _merge_pair(parts, pair)
        result = tuple(parts)
        self._cache[piece] = result
        return result

    # ------------------------------------------------------------ encode / decode

    def encode(self, text: str) -> list[int]:
        """Content token ids of ``text`` (no BOS/EOS, no truncation)."""
        ids: list[int] = []
        for chunk in _SPECIAL_PATTERN.split(text):
            if chunk in (BOS_TOKEN, EOS_TOKEN):
                ids.append(self.encoder[chunk])  # HF never splits its special tokens
            elif chunk:
                ids.extend(self._encode_plain(chunk))
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        ids = []
        for piece in _WORD_PATTERN.findall(normalize_text(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder.get(tok, EOS_ID) for tok in self.bpe(mapped))
        return ids

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; ``</w>`` becomes a space, so ``"dog."`` decodes as ``"dog ."``."""
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        special = (BOS_ID, EOS_ID)
        raw = b"".join(
            _token_bytes(self.decoder[int(i)], self.byte_decoder)
            for i in ids
            if not (skip_special_tokens and int(i) in special)
        )
        return raw.decode("utf-8", errors="replace").strip()

    def __call__(
        self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise a batch to fixed length.

        Returns ``(input_ids, attention_mask)``, both ``torch.long`` of shape ``[n, context_length]``:
        ``BOS, ids..., EOS`` then EOS padding (mask 0). Texts that are too long keep their first
        ``context_length - 2`` ids and still end with EOS.
        """
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {context_length}")
        ids = torch.full((len(texts), context_length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(texts), context_length), dtype=torch.long)
        for row, text in enumerate(texts):
            seq = [BOS_ID] + self.encode(text)[: context_length - 2] + [EOS_ID]
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask


def _merge_pair(parts: list[str], pair: tuple[str, str]) -> list[str]:
    """Merge every non-overlapping occurrence of ``pair``, scanning left to right."""
    first, second = pair
    merged: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


def _token_bytes(token: str, byte_decoder: dict[str, int]) -> bytes:
    """Raw bytes of one vocabulary token; a trailing ``</w>`` becomes a space.

    Special tokens are kept as their literal text.
    """
    if token in (BOS_TOKEN, EOS_TOKEN):
        return token.encode("utf-8")
    word_end = token.endswith(END_OF_WORD)
    body = token[: -len(END_OF_WORD)] if word_end else token
    return bytes(byte_decoder[c] for c in body) + (b" " if word_end else b"")


@lru_cache(maxsize=None)
def default_tokenizer() -> ClipTokenizer:
    """Process-wide tokenizer on the packaged vocabulary (loaded once, on first use)."""
    return ClipTokenizer()
