"""The autoencoder as a lossy codec: quantized codes, a learned entropy model, and an rANS coder.

**Coding** (``aekit compress RUN -o codes.bin`` / ``aekit decompress RUN codes.bin``):

1. *Quantize*: a continuous code (the posterior mean of a VAE, the code of an autoencoder, PCA's
   coefficients) becomes integer symbols q = round(z / Δ) with the step Δ (:class:`UniformQuantizer`;
   the decoder sees ẑ = qΔ). A model with discrete codes (the ``codes`` capability, the VQ-VAE) gives
   its code indices as they are (:class:`CodeIndices`).
2. *Model*: a factorized distribution P(q) = Π_j P_j(q_j), one histogram per code dimension fitted on
   the training split's symbols with add-½ (Krichevsky–Trofimov) smoothing over the range seen in
   training, plus an escape symbol for values outside it (:class:`FactorizedModel`). Probabilities
   are frequencies f/2¹⁶, every symbol f ≥ 1. It is fitted once per run and step and kept in
   ``RUN/codec/``; a prior over codes can take its place through the same two calls (``encode`` gives
   each symbol's (start, frequency); ``lookup`` turns a decoder slot into the symbol).
3. *Code*: range asymmetric numeral systems (rANS; Duda 2013, "Asymmetric numeral systems: entropy
   coding combining speed of Huffman coding with compression rate of arithmetic coding", with the
   32-bit state / 16-bit word renormalization of Giesen's ryg_rans) interleaved over K lanes
   (Giesen 2014, "Interleaved entropy coders"): symbol i of the row-major (N, J) array goes to lane
   i mod K, and all lanes advance together under numpy. The cost is within a fraction of a percent of
   −Σ log₂ P(q) plus 32 bits of final state per lane. Escaped values follow as zig-zag varints.

The rate is real: bits per image = 8 × (file size) / N, measured on the written file. The header
(58 bytes) names the run — a fingerprint of its config.json and weights — and the entropy model;
decoding with another run, or after the model file changed, is refused in one line instead of
producing garbage.

State update (M = 2¹⁶ total frequency, start s and frequency f of the symbol, L = 2¹⁶):

    encode:  if x ≥ f·2¹⁶: emit x mod 2¹⁶, x ← ⌊x / 2¹⁶⌋;      x ← ⌊x / f⌋·M + (x mod f) + s
    decode:  slot = x mod M → the symbol with s ≤ slot < s + f;  x ← f·⌊x / M⌋ + slot − s;
             if x < L: x ← x·2¹⁶ + next word
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import AekitError

PRECISION = 16
TOTAL = 1 << PRECISION           # M: frequencies of an alphabet sum to this
STATE_LOW = 1 << 16              # L: the state lives in [L, 2³²) between symbols
WORD_BITS = 16
MAX_LANES = 256
SYMBOLS_PER_LANE = 512           # lanes = total symbols / this, within [1, MAX_LANES]
MAX_ALPHABET = TOTAL // 2        # symbols per dimension (escape included) the 16-bit frequencies can hold
SMOOTHING = 0.5                  # add-½ counts (Krichevsky–Trofimov)

MAGIC = b"AEKC"
VERSION = 1
_HEADER = struct.Struct("<4sBB16s8sdIIIII")  # magic, version, quantizer, run, model, step, N, J, lanes, words, escape bytes
HEADER_BYTES = _HEADER.size


# ----------------------------------------------------------------------------- rANS
def num_lanes(count: int) -> int:
    return int(min(MAX_LANES, max(1, count // SYMBOLS_PER_LANE)))


def rans_encode(starts: np.ndarray, freqs: np.ndarray, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode symbols given as (start, frequency) pairs in decoding order: → (final states (K,) uint32, words uint16).

    Symbol i is coded in lane i mod K at step i // K. The encoder runs the steps backwards, so that
    the decoder, going forwards, pops them in order; the words of a step are read by the decoder in
    lane order, so they are stored step by step, lanes ascending.
    """
    starts = np.asarray(starts, dtype=np.uint64)
    freqs = np.asarray(freqs, dtype=np.uint64)
    count = len(starts)
    if count and (freqs.min() < 1 or int((starts + freqs).max()) > TOTAL):
        raise ValueError("every symbol needs a frequency >= 1 and start + frequency <= 2^16")
    steps = math.ceil(count / lanes)
    x = np.full(lanes, STATE_LOW, dtype=np.uint64)
    chunks = []
    for t in reversed(range(steps)):
        s, f = starts[t * lanes:(t + 1) * lanes], freqs[t * lanes:(t + 1) * lanes]
        k = len(s)                                   # the last step may fill only the first k lanes
        xs = x[:k]
        emit = xs >= (f << np.uint64(16))            # renormalize before pushing: keeps x < 2³² after
        chunks.append((xs[emit] & np.uint64(0xFFFF)).astype(np.uint16))
        xs = np.where(emit, xs >> np.uint64(16), xs)
        x[:k] = (xs // f << np.uint64(PRECISION)) + xs % f + s
    words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, np.uint16)  # decoder order: step 0 first
    return x.astype(np.uint32), words


def rans_decode(states: np.ndarray, words: np.ndarray, count: int, lookup) -> np.ndarray:
    """Decode ``count`` symbols; ``lookup(positions, slots) -> (symbols, starts, freqs)`` is the model.

    ``positions`` are the indices i of the symbols being decoded (i = t·K + lane), ``slots`` their
    x mod M. Raises ValueError when the stream does not end where it should (damaged data).
    """
    lanes = len(states)
    x = states.astype(np.uint64)
    words = words.astype(np.uint64)
    out = np.empty(count, dtype=np.int64)
    ptr = 0
    mask = np.uint64(TOTAL - 1)
    for t in range(math.ceil(count / lanes)):
        positions = np.arange(t * lanes, min(count, (t + 1) * lanes))
        k = len(positions)
        xs = x[:k]
        slots = xs & mask
        symbols, s, f = lookup(positions, slots)
        out[positions] = symbols
        xs = np.asarray(f, dtype=np.uint64) * (xs >> np.uint64(PRECISION)) + slots - np.asarray(s, dtype=np.uint64)
        need = xs < STATE_LOW
        m = int(need.sum())
        if ptr + m > len(words):
            raise ValueError("the code stream ends early")
        xs[need] = (xs[need] << np.uint64(16)) | words[ptr:ptr + m]
        ptr += m
        x[:k] = xs
    if ptr != len(words) or not (x == STATE_LOW).all():
        raise ValueError("the code stream does not end in the initial state")
    return out


# ----------------------------------------------------------------------------- the learned model
def quantize_frequencies(probs: np.ndarray) -> np.ndarray:
    """Probabilities (A,) → integer frequencies ≥ 1 summing to exactly M = 2¹⁶."""
    a = len(probs)
    freqs = np.floor(probs * (TOTAL - a)).astype(np.int64) + 1
    freqs[np.argmax(freqs)] += TOTAL - int(freqs.sum())
    return freqs


@dataclass(frozen=True, eq=False)
class FactorizedModel:
    """P(q) = Π_j P_j(q_j): per dimension j an alphabet low_j .. low_j + size_j − 1 and an escape.

    ``freqs`` (J, A): the frequencies of symbol a = q − low_j (a < size_j) and of the escape
    (a = size_j); zeros after it. Frequencies sum to 2¹⁶ in every row.
    """

    low: np.ndarray    # (J,) int64
    sizes: np.ndarray  # (J,) int64, escape excluded
    freqs: np.ndarray  # (J, A) int64

    @classmethod
    def fit(cls, symbols: np.ndarray, alphabet: tuple[int, int] | None = None) -> "FactorizedModel":
        """Histograms of training ``symbols`` (N, J) with add-½ smoothing over their range (or ``alphabet`` [lo, hi))."""
        symbols = np.asarray(symbols, dtype=np.int64)
        if symbols.ndim != 2 or len(symbols) == 0:
            raise AekitError(f"the entropy model needs training codes (N, J) with N > 0, got shape {symbols.shape}")
        if alphabet is None:
            low, high = symbols.min(0), symbols.max(0) + 1
        else:
            low, high = np.full(symbols.shape[1], alphabet[0]), np.full(symbols.shape[1], alphabet[1])
        sizes = high - low
        if int(sizes.max()) + 1 > MAX_ALPHABET:
            raise AekitError(f"a code dimension spans {int(sizes.max())} quantization steps, more than the "
                             f"{MAX_ALPHABET - 1} the coder holds; use a larger --step")
        width = int(sizes.max()) + 1
        freqs = np.zeros((symbols.shape[1], width), dtype=np.int64)
        for j in range(symbols.shape[1]):
            inside = symbols[:, j][(symbols[:, j] >= low[j]) & (symbols[:, j] < high[j])] - low[j]
            counts = np.bincount(inside, minlength=sizes[j]).astype(np.float64) + SMOOTHING
            counts = np.append(counts, SMOOTHING)  # the escape
            freqs[j, :sizes[j] + 1] = quantize_frequencies(counts / counts.sum())
        return cls(low.astype(np.int64), sizes.astype(np.int64), freqs)

    @property
    def num_dims(self) -> int:
        return len(self.low)

    def fingerprint(self) -> bytes:
        h = hashlib.sha256()
        for a in (self.low, self.sizes, self.freqs):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.digest()[:8]

    def _starts(self) -> np.ndarray:
        return np.cumsum(self.freqs, 1) - self.freqs  # (J, A): start of each symbol

    def encode(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Symbols (N, J) → starts, freqs of their alphabet symbols (row-major, N·J) and the escaped values."""
        symbols = np.asarray(symbols, dtype=np.int64)
        a = symbols - self.low
        escaped = (a < 0) | (a >= self.sizes)
        a = np.where(escaped, self.sizes, a)  # (N, J)
        dims = np.broadcast_to(np.arange(self.num_dims), a.shape)
        starts = self._starts()[dims, a].ravel()
        return starts, self.freqs[dims, a].ravel(), symbols[escaped]  # escapes in row-major order

    def ideal_bits(self, symbols: np.ndarray) -> float:
        """−Σ log₂ P(q) over ``symbols`` (N, J): the length an ideal coder would reach (escapes' values excluded)."""
        _, freqs, _ = self.encode(symbols)
        return float(-np.log2(freqs / TOTAL).sum())

    def lookup_table(self):
        """``lookup(positions, slots)`` for :func:`rans_decode`: position i is dimension i mod J."""
        starts = self._starts()
        # One sorted array of every dimension's starts, dimension j shifted by j·M, so one searchsorted
        # finds the symbol of every slot whatever its dimension.
        flat = np.concatenate([starts[j, :self.sizes[j] + 1] + j * TOTAL for j in range(self.num_dims)])
        base = np.concatenate([[0], np.cumsum(self.sizes + 1)[:-1]])

        def lookup(positions, slots):
            dims = positions % self.num_dims
            index = np.searchsorted(flat, slots.astype(np.int64) + dims * TOTAL, side="right") - 1
            a = index - base[dims]
            return a, starts[dims, a], self.freqs[dims, a]  # a == size_j marks an escape
        return lookup

    def save(self, path: Path) -> None:
        from .runs import atomic_write

        atomic_write(Path(path), lambda f: np.savez(f, low=self.low, sizes=self.sizes, freqs=self.freqs))

    @classmethod
    def load(cls, path: Path) -> "FactorizedModel":
        with np.load(path) as archive:
            return cls(archive["low"], archive["sizes"], archive["freqs"])


# ----------------------------------------------------------------------------- varints for escapes
def _varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        z = (v << 1) ^ (v >> 63)  # zig-zag: small magnitudes of either sign → small codes
        z &= (1 << 64) - 1
        while z >= 0x80:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
    return bytes(out)


def _read_varints(data: bytes, count: int) -> np.ndarray:
    values, z, shift = [], 0, 0
    for byte in data:
        z |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append((z >> 1) ^ -(z & 1))
            z, shift = 0, 0
    if len(values) != count or shift:
        raise ValueError("the escape section is damaged")
    return np.array(values, dtype=np.int64)


# ----------------------------------------------------------------------------- the symbol stream
def encode_symbols(symbols: np.ndarray, model: FactorizedModel) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(N, J) symbols → (states, words, escape bytes), losslessly."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.ndim != 2 or symbols.shape[1] != model.num_dims:
        raise AekitError(f"codes of shape {symbols.shape} do not fit an entropy model of {model.num_dims} dimensions")
    starts, freqs, escapes = model.encode(symbols)
    states, words = rans_encode(starts, freqs, num_lanes(symbols.size))
    return states, words, _varints(escapes)


def decode_symbols(states, words, escape_bytes: bytes, shape: tuple[int, int], model: FactorizedModel) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: the (N, J) symbols exactly."""
    a = rans_decode(np.asarray(states), np.asarray(words), shape[0] * shape[1], model.lookup_table()).reshape(shape)
    escaped = a == model.sizes
    symbols = a + model.low
    symbols[escaped] = _read_varints(escape_bytes, int(escaped.sum()))
    return symbols


# ----------------------------------------------------------------------------- quantizers
class UniformQuantizer:
    """Continuous codes: q = round(z / Δ), ẑ = qΔ, z the model's ``embed`` (posterior mean, or the code)."""

    kind = 0

    def __init__(self, step: float):
        if not (math.isfinite(step) and step > 0):
            raise AekitError(f"--step must be a finite quantization step > 0, got {step}")
        self.step = float(step)

    def model_file(self) -> str:
        return f"uniform-step{self.step:.6g}.npz"

    @torch.no_grad()
    def symbols(self, model, x: torch.Tensor, y=None, batch_size: int = 1000) -> np.ndarray:
        codes = torch.cat([model.embed(x[s:s + batch_size], None if y is None else y[s:s + batch_size])
                           for s in range(0, len(x), batch_size)])
        q = torch.round(codes.double() / self.step)
        if not torch.isfinite(q).all() or q.abs().max() > 2 ** 40:
            raise AekitError("the codes are not finite or too large to quantize; check the run")
        return q.long().numpy()

    @torch.no_grad()
    def decode(self, model, symbols: np.ndarray, y=None, batch_size: int = 1000) -> torch.Tensor:
        z = torch.from_numpy(symbols).double().mul(self.step).float()
        return torch.cat([model.decode(z[s:s + batch_size], None if y is None else y[s:s + batch_size]).mean
                          for s in range(0, len(z), batch_size)])

    def alphabet(self, model):
        return None  # the range seen in training


class CodeIndices:
    """Discrete codes as they are: ``model.codes(x)`` (N, ...) integer indices in [0, model.num_codes),
    decoded by ``model.decode_codes(indices)`` — the face of a vector-quantized model (capability ``codes``)."""

    kind = 1
    step = 0.0

    def model_file(self) -> str:
        return "indices.npz"

    @torch.no_grad()
    def symbols(self, model, x, y=None, batch_size: int = 1000) -> np.ndarray:
        codes = torch.cat([model.codes(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])
        self.code_shape = tuple(codes.shape[1:])
        return codes.reshape(len(codes), -1).long().cpu().numpy()

    @torch.no_grad()
    def decode(self, model, symbols: np.ndarray, y=None, batch_size: int = 1000) -> torch.Tensor:
        shape = tuple(getattr(model, "code_shape", None) or getattr(self, "code_shape", (symbols.shape[1],)))
        codes = torch.from_numpy(symbols).reshape(len(symbols), *shape)
        return torch.cat([model.decode_codes(codes[s:s + batch_size]) for s in range(0, len(codes), batch_size)])

    def alphabet(self, model):
        return (0, int(model.num_codes))


def quantizer_for(model, step: float | None):
    """The model's discrete codes when it has them (``codes`` capability), else a uniform quantizer of ``step``."""
    from .capabilities import CODES, has

    if has(model, CODES):
        if step is not None:
            raise AekitError("this model has discrete codes, coded as they are; drop --step")
        return CodeIndices()
    if step is None:
        raise AekitError("give the quantization step of the continuous code, e.g. --step 0.1 "
                         "(smaller: more bits, better images)")
    return UniformQuantizer(step)


# ----------------------------------------------------------------------------- files
def run_fingerprint(run_dir: Path) -> bytes:
    """16 bytes naming a run: SHA-256 of its config.json and best weights."""
    from . import runs

    run_dir = Path(run_dir)
    weights = run_dir / runs.BEST if (run_dir / runs.BEST).exists() else run_dir / runs.LAST
    h = hashlib.sha256((run_dir / runs.CONFIG).read_bytes())
    h.update(weights.read_bytes())
    return h.digest()[:16]


def entropy_model(model, quantizer, train_x: torch.Tensor | None) -> FactorizedModel:
    """The run's entropy model for ``quantizer``: read from RUN/codec/, or fitted on ``train_x`` and saved there."""
    path = Path(model.run_dir) / "codec" / quantizer.model_file()
    if path.is_file():
        return FactorizedModel.load(path)
    if train_x is None:
        raise AekitError(f"{model.run_dir} has no entropy model {path.name} (it is fitted by aekit compress); "
                         f"the file was made with another step or the model was removed")
    fitted = FactorizedModel.fit(quantizer.symbols(model, train_x), quantizer.alphabet(model))
    fitted.save(path)
    return fitted


def write_file(path: Path, quantizer, run_fp: bytes, entropy: FactorizedModel, symbols: np.ndarray) -> dict:
    """Code ``symbols`` (N, J) into ``path``; returns the sizes (bits) of header and payload as written."""
    from .runs import atomic_write_bytes

    states, words, escapes = encode_symbols(symbols, entropy)
    n, j = symbols.shape
    header = _HEADER.pack(MAGIC, VERSION, quantizer.kind, run_fp, entropy.fingerprint(), quantizer.step, n, j,
                          len(states), len(words), len(escapes))
    payload = states.astype("<u4").tobytes() + words.astype("<u2").tobytes() + escapes
    atomic_write_bytes(Path(path), header + payload)
    return {"images": n, "code_dims": j, "lanes": len(states), "file_bytes": len(header) + len(payload),
            "header_bits": 8 * len(header), "payload_bits": 8 * len(payload),
            "state_bits": 32 * len(states), "word_bits": WORD_BITS * len(words), "escape_bits": 8 * len(escapes),
            "escaped_symbols": int((symbols - entropy.low < 0).sum() + (symbols - entropy.low >= entropy.sizes).sum()),
            "ideal_payload_bits": entropy.ideal_bits(symbols)}


def read_header(path: Path) -> dict:
    data = Path(path).read_bytes()
    if len(data) < HEADER_BYTES or data[:4] != MAGIC:
        raise AekitError(f"{path} is not an aekit code file (no AEKC header)")
    magic, version, kind, run_fp, model_fp, step, n, j, lanes, num_words, escape_bytes = _HEADER.unpack(
        data[:HEADER_BYTES])
    if version != VERSION:
        raise AekitError(f"{path} is a version {version} code file; this aekit reads version {VERSION}")
    return {"kind": kind, "run": run_fp, "model": model_fp, "step": step, "images": n, "code_dims": j,
            "lanes": lanes, "words": num_words, "escape_bytes": escape_bytes, "data": data}


def read_file(path: Path, run_fp: bytes, run_dir, load_entropy) -> tuple[dict, np.ndarray]:
    """(header, symbols (N, J)) of a code file, after checking that it was made by this run and entropy model.

    ``load_entropy(header) -> FactorizedModel``.
    """
    h = read_header(path)
    if h["run"] != run_fp:
        raise AekitError(f"{path} was made by another run (fingerprint {h['run'].hex()}), not by {run_dir} "
                         f"({run_fp.hex()}); decompress it with the run that compressed it")
    entropy = load_entropy(h)
    if entropy.fingerprint() != h["model"] or entropy.num_dims != h["code_dims"]:
        raise AekitError(f"{path} was coded with another entropy model than {run_dir}/codec holds now; "
                         f"compress the images again")
    data = h["data"]
    sizes = (4 * h["lanes"], 2 * h["words"], h["escape_bytes"])
    if len(data) != HEADER_BYTES + sum(sizes):
        raise AekitError(f"{path} is truncated or has trailing data ({len(data)} bytes, expected "
                         f"{HEADER_BYTES + sum(sizes)})")
    at = HEADER_BYTES
    states = np.frombuffer(data, "<u4", h["lanes"], at)
    words = np.frombuffer(data, "<u2", h["words"], at + sizes[0])
    escapes = data[at + sizes[0] + sizes[1]:]
    try:
        symbols = decode_symbols(states, words, escapes, (h["images"], h["code_dims"]), entropy)
    except ValueError as error:
        raise AekitError(f"{path} is damaged ({error})") from None
    return h, symbols


# ----------------------------------------------------------------------------- the Python face
def compress(model, x: torch.Tensor, path: str | Path, step: float | None = None,
             train_x: torch.Tensor | None = None) -> dict:
    """Code the rows ``x`` (N, D) with the trained ``model`` (from :func:`aekit.load`) into ``path``.

    ``step``: the quantization step of a continuous code (None for a model with discrete codes).
    ``train_x``: the training rows the entropy model is fitted on, the first time for this run and
    step (it is kept in RUN/codec/ and reused). Returns the report: sizes in bits as written
    (``header_bits + payload_bits == 8 × file size``), ``bits_per_image``, ``ideal_payload_bits``.

        model = aekit.load("runs/ae")
        report = aekit.codec.compress(model, test_x, "codes.bin", step=0.25, train_x=train_x)
        x_hat = aekit.codec.decompress(model, "codes.bin")
    """
    quantizer = quantizer_for(model, step)
    entropy = entropy_model(model, quantizer, train_x)
    symbols = quantizer.symbols(model, x)
    report = write_file(Path(path), quantizer, run_fingerprint(model.run_dir), entropy, symbols)
    report["bits_per_image"] = 8 * report["file_bytes"] / len(x)
    return report


def header_quantizer(header: dict):
    """The quantizer a code file's header names (its kind and step)."""
    return CodeIndices() if header["kind"] == CodeIndices.kind else UniformQuantizer(header["step"])


def decompress(model, path: str | Path, symbols_only: bool = False):
    """The decoded rows (N, D) of a file made by :func:`compress` with the same run (or its integer codes)."""
    header, symbols = read_file(Path(path), run_fingerprint(model.run_dir), model.run_dir,
                                lambda h: entropy_model(model, header_quantizer(h), None))
    return symbols if symbols_only else header_quantizer(header).decode(model, symbols)
