"""Autoregressive networks over maps: the gated PixelCNN, as a prior over codes and as a likelihood head.

Gated PixelCNN (van den Oord, Kalchbrenner et al. 2016, "Conditional Image Generation with PixelCNN
Decoders", §2.2–2.3). A map x (C, H, W) is modelled in raster order,

    p(x) = ∏_{r, c} p(x_{r,c} | x_{<(r,c)} [, y] [, h]),

by two stacks of convolutions that never look ahead, with no blind spot:

* vertical stack: kernel (k/2 + 1) × k over rows r − k/2 .. r (every column in reach), never fed
  to the output directly; its pre-activation enters the horizontal stack **one row down** (row r
  of the horizontal stack sees vertical features of row r − 1), so it carries rows < r only;
* horizontal stack: kernel 1 × (k/2 + 1) over columns c − k/2 .. c of the same row, with a
  residual connection; in the first layer (mask "A") 1 × k/2 over columns < c and no residual;
* gates: y = tanh(W_f ∗ x + V_f·y + U_f ∗ h) ⊙ σ(W_g ∗ x + V_g·y + U_g ∗ h) (eq. 2 and 4), with
  optional class conditioning y (one-hot label, an embedding per layer) and a spatial conditioning
  map h (1-wide convolutions), e.g. decoder features of a VAE's z (PixelVAE, Gulrajani et al. 2017).

Output at (r, c) therefore depends on rows < r and on row r left of c: causal in raster order.

1-D sequences (and anything else, flattened in raster order: 3-D code maps (T, H, W) of clips,
vectors) use the horizontal stack alone — causal dilated convolutions (dilation 1, 2, 4, … so that
one cycle of layers covers the sequence, as in WaveNet) — with a learned per-position bias, which
tells the network where in the raster it is (the row structure of a flattened map).

**Sampling** is ancestral, batched over samples, and reuses everything already computed
(:meth:`GatedPixelCNN.sample`): the vertical stack is computed once per row (one output row from a
window of k/2 + 1 cached rows per layer), the horizontal stack once per position (one output from
a window of cached columns per layer), the conditioning terms once. The cost per position is one
window per layer instead of a pass of the whole network over the whole map.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution

from .errors import AekitError


def _gate(t: torch.Tensor, dim: int = 1) -> torch.Tensor:
    a, b = t.chunk(2, dim)
    return torch.tanh(a) * torch.sigmoid(b)


def _bias_row(b: torch.Tensor, r: int) -> torch.Tensor:
    """Row r of a conditioning term (n|1, 2p, H|1, W|1), as (n|1, 2p, W|1); a scalar stays a scalar."""
    return b if b.dim() < 4 else b[:, :, r if b.shape[2] > 1 else 0]


def _bias_at(b: torch.Tensor, r: int, c: int) -> torch.Tensor:
    """Position (r, c) of a conditioning term, as (n|1, 2p); a scalar stays a scalar."""
    return b if b.dim() < 4 else b[:, :, r if b.shape[2] > 1 else 0, c if b.shape[3] > 1 else 0]


# Below this many elements per operation, CPU sampling runs on one intra-op thread: the per-position
# operations are too small to split, and extra threads only add synchronization (on a busy 2-core
# machine, 64 maps of 7x7 took 23 s with two threads and 0.9 s with one).
_SMALL_OP_ELEMENTS = 1 << 16


@contextmanager
def _few_threads(device, elements: int):
    if torch.device(device).type != "cpu" or elements >= _SMALL_OP_ELEMENTS or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _linear_1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution applied to feature vectors (n, C_in) → (n, C_out)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class GatedLayer(nn.Module):
    """One gated layer: vertical (2-D only) and horizontal stacks, class and spatial conditioning."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, *, first: bool, vertical: bool,
                 dilation: int = 1, num_classes: int | None = None, cond_channels: int = 0, length: int | None = None):
        super().__init__()
        p, half = channels, kernel_size // 2
        self.first, self.vertical, self.half, self.dilation = first, vertical, half, dilation
        self.kernel_width = half if first else half + 1  # mask A: columns < c; mask B: columns ≤ c
        self.h_conv = nn.Conv2d(in_channels, 2 * p, (1, self.kernel_width), dilation=(1, dilation))
        self.h_out = nn.Conv2d(p, p, 1)
        if vertical:
            self.v_conv = nn.Conv2d(in_channels, 2 * p, (half + 1, kernel_size))
            self.link = nn.Conv2d(2 * p, 2 * p, 1)
        self.class_h = nn.Embedding(num_classes, 2 * p) if num_classes else None
        self.class_v = nn.Embedding(num_classes, 2 * p) if num_classes and vertical else None
        self.cond_h = nn.Conv2d(cond_channels, 2 * p, 1) if cond_channels else None
        self.cond_v = nn.Conv2d(cond_channels, 2 * p, 1) if cond_channels and vertical else None
        # 1-D: a learned bias per position (2p, 1, L), so a flattened raster knows its coordinates.
        self.position = nn.Parameter(torch.zeros(2 * p, 1, length)) if length else None

    @property
    def left_pad(self) -> int:
        """Columns of zeros the horizontal input needs on the left."""
        return self.half if self.first else self.half * self.dilation

    def bias_maps(self, cond_map, y, grid) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """The conditioning terms added before the gates, (n|1, 2p, H, W) or 0, for the (h, v) stacks."""
        h_bias: torch.Tensor | float = 0.0
        v_bias: torch.Tensor | float = 0.0
        if self.class_h is not None:
            h_bias = h_bias + self.class_h(y)[:, :, None, None]
            if self.class_v is not None:
                v_bias = v_bias + self.class_v(y)[:, :, None, None]
        if self.cond_h is not None:
            h_bias = h_bias + self.cond_h(cond_map)
            if self.cond_v is not None:
                v_bias = v_bias + self.cond_v(cond_map)
        if self.position is not None:
            h_bias = h_bias + self.position[None]
        return h_bias, v_bias

    def forward(self, v, h, h_bias, v_bias):
        """One layer on whole maps (training / log_prob): (v, h) (B, C, H, W) → (v', h') (B, p, H, W)."""
        height, width = h.shape[-2:]
        link = 0.0
        v_new = None
        if self.vertical:
            v_pre = self.v_conv(F.pad(v, (self.half, self.half, self.half, 0)))  # rows r−k/2..r: (B, 2p, H, W)
            link = self.link(F.pad(v_pre, (0, 0, 1, 0))[:, :, :height])  # row r gets vertical row r−1
            v_new = _gate(v_pre + v_bias)
        h_pre = self.h_conv(F.pad(h, (self.left_pad, 0, 0, 0)))[..., :width]  # columns c−k/2..c (or <c)
        out = self.h_out(_gate(h_pre + link + h_bias))
        return v_new, out if self.first else h + out


class GatedPixelCNN(nn.Module):
    """Input map (B, C_in, *S) → outputs (B, C_out, *S), each position a function of earlier ones only.

    ``spatial_dims`` 2: the gated PixelCNN with vertical and horizontal stacks on (H, W). 1: the
    horizontal stack alone, dilated, on sequences of ``length`` positions (other shapes are flattened
    to that by the caller). ``cond_channels``: channels of a spatial conditioning map (B, F, *S).
    """

    def __init__(self, in_channels: int, out_channels: int, *, channels: int = 64, layers: int = 12,
                 kernel_size: int = 3, spatial_dims: int = 2, num_classes: int | None = None,
                 cond_channels: int = 0, length: int | None = None):
        super().__init__()
        if layers < 1:
            raise AekitError(f"--pixelcnn-layers must be >= 1, got {layers}")
        if channels < 1:
            raise AekitError(f"--pixelcnn-channels must be >= 1, got {channels}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise AekitError(f"the PixelCNN kernel size must be odd and >= 3, got {kernel_size}")
        if spatial_dims not in (1, 2):
            raise AekitError(f"the PixelCNN works on 1-D or 2-D maps (flatten others), got {spatial_dims} dims")
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.cond_channels = cond_channels
        vertical = spatial_dims == 2
        dilations = [1] * layers
        if not vertical:
            # One cycle 1, 2, …, 2^(m−1) reaches back Σ (k/2)·2^i ≥ length − 1 positions.
            cycle = max(1, math.ceil(math.log2(max(2, (length or 2)) / (kernel_size // 2) + 1)))
            dilations = [2 ** (i % cycle) for i in range(layers)]
        self.layers = nn.ModuleList(
            GatedLayer(in_channels if i == 0 else channels, channels, kernel_size, first=i == 0, vertical=vertical,
                       dilation=dilations[i], num_classes=num_classes, cond_channels=cond_channels,
                       length=None if vertical else length)
            for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, out_channels, 1))

    def _grid(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """(B, C, *S) → the (B, C, H, W) grid the layers run on: 1-D maps become (B, C, 1, L)."""
        if t is None or self.spatial_dims == 2:
            return t
        return t.reshape(t.shape[0], t.shape[1], 1, -1)

    def features(self, x: torch.Tensor, cond_map: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """The horizontal stack's last output (B, p, H, W) on the layers' grid (before the output head)."""
        grid = self._grid(x)
        cond = self._grid(cond_map)
        v = h = grid
        for layer in self.layers:
            h_bias, v_bias = layer.bias_maps(cond, y, grid.shape[-2:])
            v, h = layer(v, h, h_bias, v_bias)
        return h

    def forward(self, x: torch.Tensor, cond_map: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """Teacher-forced outputs for every position of ``x`` (B, C_in, *S) at once: (B, C_out, *S)."""
        return self.head(self.features(x, cond_map, y)).reshape(x.shape[0], -1, *x.shape[2:])

    @torch.no_grad()
    def sample(self, n: int, shape: Sequence[int], draw: Callable[[torch.Tensor, int], torch.Tensor], *,
               in_channels: int, cond_map: torch.Tensor | None = None, y: torch.Tensor | None = None,
               device=None, dtype=torch.float32) -> None:
        """Ancestral sampling with cached activations, batched over ``n`` samples.

        ``shape`` is the map (H, W) or (L,). At each position i (raster order) the outputs (n, C_out)
        are handed to ``draw(outputs, i)``, which samples x_i and returns its input features (n, C_in)
        (an embedding of a code, or the binary pixel values); those are written into the caches.
        """
        device = device if device is not None else next(self.parameters()).device
        widest = max(lay.h_conv.out_channels for lay in self.layers)
        with _few_threads(device, n * widest):
            self._sample(n, shape, draw, in_channels, cond_map, y, device, dtype)

    def _sample(self, n, shape, draw, in_channels, cond_map, y, device, dtype) -> None:
        height, width = (shape[0], shape[1]) if self.spatial_dims == 2 else (1, math.prod(shape))
        cond = self._grid(cond_map)
        layers = list(self.layers)
        half = layers[0].half
        chans = [in_channels] + [lay.h_out.out_channels for lay in layers]
        # Horizontal inputs of every layer, left-padded with the zeros the convolution would see.
        h_store = [torch.zeros(n, chans[i], height, width + lay.left_pad, device=device, dtype=dtype)
                   for i, lay in enumerate(layers)]
        v_store, v_prev = [], [None] * len(layers)
        if self.spatial_dims == 2:  # vertical inputs, padded k/2 rows on top and k/2 columns each side
            v_store = [torch.zeros(n, chans[i], height + half, width + 2 * half, device=device, dtype=dtype)
                       for i in range(len(layers))]
        biases = [lay.bias_maps(cond, y, (height, width)) for lay in layers]
        biases = [tuple(b if torch.is_tensor(b) else torch.zeros((), device=device, dtype=dtype) for b in pair)
                  for pair in biases]
        position = 0
        for r in range(height):
            if self.spatial_dims == 2 and r > 0:  # vertical stack for row r − 1, all layers, once per row
                for i, lay in enumerate(layers):
                    window = v_store[i][:, :, r - 1:r + half]  # original rows r−1−k/2 .. r−1
                    pre = F.conv2d(window, lay.v_conv.weight, lay.v_conv.bias)  # (n, 2p, 1, W)
                    v_prev[i] = pre[:, :, 0]  # (n, 2p, W)
                    if i + 1 < len(layers):
                        v_store[i + 1][:, :, half + r - 1, half:half + width] = _gate(
                            pre[:, :, 0] + _bias_row(biases[i][1], r - 1))
            for c in range(width):
                out = None
                for i, lay in enumerate(layers):
                    d = lay.dilation
                    window = h_store[i][:, :, r, c:c + (lay.kernel_width - 1) * d + 1:d]  # (n, C, kw)
                    pre = F.linear(window.reshape(n, -1), lay.h_conv.weight.flatten(1), lay.h_conv.bias)
                    if self.spatial_dims == 2:
                        pre = pre + (_linear_1x1(lay.link, v_prev[i][:, :, c]) if r > 0 else lay.link.bias)
                    pre = pre + _bias_at(biases[i][0], r, c)
                    out = _linear_1x1(lay.h_out, _gate(pre))
                    if not lay.first:
                        out = out + h_store[i][:, :, r, c + lay.left_pad]
                    if i + 1 < len(layers):
                        h_store[i + 1][:, :, r, c + layers[i + 1].left_pad] = out
                logits = self.head(out[:, :, None, None])[:, :, 0, 0]  # (n, C_out)
                features = draw(logits, position)  # (n, C_in)
                h_store[0][:, :, r, c + layers[0].left_pad] = features
                if self.spatial_dims == 2:
                    v_store[0][:, :, half + r, half + c] = features
                position += 1


class AutoregressiveModel(nn.Module):
    """A :class:`GatedPixelCNN` with its input and output per position, over maps of shape ``map_shape``.

    ``num_values`` = K: a categorical variable per position (code maps, (B, *S) int64), fed to the
    network through an embedding. Otherwise ``channels`` = C binary variables per position (images,
    (B, C, *S) in {0, 1}), Bernoulli from logits, fed as they are. 2-D maps use the gated PixelCNN; any
    other map (1-D sequences, 3-D clips) is flattened in raster order for the 1-D network.
    """

    def __init__(self, map_shape: Sequence[int], *, num_values: int | None = None, channels: int = 1,
                 hidden_channels: int = 64, layers: int = 12, kernel_size: int = 3,
                 num_classes: int | None = None, cond_channels: int = 0):
        super().__init__()
        self.map_shape = tuple(int(s) for s in map_shape)
        self.num_values = num_values
        self.channels = channels
        self.num_classes = num_classes
        self.categorical = num_values is not None
        in_channels = hidden_channels if self.categorical else channels
        self.embed = nn.Embedding(num_values, hidden_channels) if self.categorical else None
        spatial_dims = 2 if len(self.map_shape) == 2 else 1
        self.net = GatedPixelCNN(in_channels, num_values if self.categorical else channels, channels=hidden_channels,
                                 layers=layers, kernel_size=kernel_size, spatial_dims=spatial_dims,
                                 num_classes=num_classes, cond_channels=cond_channels,
                                 length=None if spatial_dims == 2 else math.prod(self.map_shape))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.categorical:
            return self.embed(x).movedim(-1, 1)  # (B, *S) → (B, E, *S)
        return x

    def logits(self, x: torch.Tensor, cond_map=None, y=None) -> torch.Tensor:
        """Teacher forcing: the logits of p(x_i | x_<i) at every position, (B, K, *S) or (B, C, *S)."""
        return self.net(self._features(x), cond_map, y)

    def log_prob(self, x: torch.Tensor, cond_map=None, y=None) -> torch.Tensor:
        """log p(x) = Σ_i log p(x_i | x_<i), per example (B,), nats."""
        logits = self.logits(x, cond_map, y)
        if self.categorical:
            return -F.cross_entropy(logits, x, reduction="none").reshape(x.shape[0], -1).sum(1)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").reshape(x.shape[0], -1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, cond_map=None, y=None, *, probabilities: bool = False, record: list | None = None):
        """n ancestral samples (n, *S) int64 or (n, C, *S) float; with ``probabilities`` the binary model
        also returns the conditional means p(x_i = 1 | x_<i) along the sample. ``record`` collects the
        logits of every position (for tests)."""
        device = self.net.head[-1].weight.device
        positions = math.prod(self.map_shape)
        flat = torch.zeros(n, positions, dtype=torch.long, device=device) if self.categorical else \
            torch.zeros(n, self.channels, positions, device=device)
        means = torch.zeros(n, self.channels, positions, device=device) if probabilities else None

        def draw(logits: torch.Tensor, i: int) -> torch.Tensor:
            if record is not None:
                record.append(logits.clone())
            if self.categorical:
                code = torch.multinomial(torch.softmax(logits.float(), -1), 1)[:, 0]  # (n,)
                flat[:, i] = code
                return self.embed(code)
            p = torch.sigmoid(logits)
            if means is not None:
                means[:, :, i] = p
            value = torch.bernoulli(p)
            flat[:, :, i] = value
            return value

        in_channels = self.embed.embedding_dim if self.categorical else self.channels
        self.net.sample(n, self.map_shape, draw, in_channels=in_channels, cond_map=cond_map, y=y, device=device)
        shape = (n, *self.map_shape) if self.categorical else (n, self.channels, *self.map_shape)
        x = flat.reshape(shape)
        return (x, means.reshape(shape)) if probabilities else x


class AutoregressiveDistribution(Distribution):
    """p(x | h, y) = ∏_i p(x_i | x_<i, h, y) as a torch Distribution over flattened rows.

    ``batch_shape`` is the leading shape of the conditioning (e.g. (L, B) for L samples of z per
    example); events are flattened rows (D,) like every other likelihood's. ``log_prob`` runs the
    masked network once (teacher forcing); ``sample`` is ancestral with cached activations. ``mean``
    is not tractable for an autoregressive model: it returns the conditional means p(x_i = 1 | x_<i)
    along one ancestral sample (what figures show), and ``sample`` draws the binary values themselves.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, model: AutoregressiveModel, cond_map: torch.Tensor | None, y: torch.Tensor | None,
                 batch_shape: torch.Size, event_dim: int):
        self.model, self.cond_map, self.y = model, cond_map, y
        super().__init__(batch_shape=batch_shape, event_shape=torch.Size([event_dim]), validate_args=False)

    @property
    def _n(self) -> int:
        return math.prod(self.batch_shape)

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = x.expand(*self.batch_shape, x.shape[-1]).reshape(self._n, -1)
        if m.categorical:
            return x.round().long().reshape(self._n, *m.map_shape)
        return x.reshape(self._n, m.channels, *m.map_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.model.log_prob(self._shaped(value), self.cond_map, self.y).reshape(self.batch_shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if tuple(sample_shape):
            raise AekitError("draw one sample per conditioning (sample_shape must be empty)")
        x = self.model.sample(self._n, self.cond_map, self.y)
        return x.reshape(*self.batch_shape, -1).float()

    @property
    def mean(self) -> torch.Tensor:
        if self.model.categorical:
            return self.sample()
        _, means = self.model.sample(self._n, self.cond_map, self.y, probabilities=True)
        return means.reshape(*self.batch_shape, -1)
