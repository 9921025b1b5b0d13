"""The deep autoencoder with greedy layer-wise RBM pretraining (Hinton & Salakhutdinov 2006).

Generative pretraining: an RBM is trained on the data (CD-1), its hidden probabilities become the
data of the next RBM, and so on; the top RBM has linear hidden units, so the code is real-valued.
The stack is then *unrolled*: the encoder uses each RBM's W and hidden bias, the decoder the same
weights transposed with the visible biases, and the whole network is fine-tuned by
backpropagation on the reconstruction cross-entropy −log p(x|z) (logistic output units):

    x → σ(W₁x + c₁) → … → z = W_Lh + c_L  (linear code)  → σ(W_Lᵀz + b_L) → … → p(x|z) = Bern(σ(W₁ᵀh + b₁))

Their MNIST network is 784-1000-500-250-30 (``--hidden-dims 1000,500,250 --latent-dim 30``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import DataShape, ModelConfig
from ..likelihoods import build_likelihood
from ..latents import PointLatent
from .parts import Decoder, Encoder
from .rbm import RBM
from .vae import Autoencoder


class SigmoidStack(nn.Module):
    """Linear + logistic layers; ``linear_last`` leaves the last layer linear (the code, or logits)."""

    def __init__(self, sizes: Sequence[int], linear_last: bool):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.linear_last = linear_last
        self.out_features = sizes[-1]

    def forward(self, x, cond=None):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if not (self.linear_last and i == len(self.layers) - 1):
                x = torch.sigmoid(x)
        return x


class DeepAutoencoder(Autoencoder):
    """The unrolled deep autoencoder: sigmoid encoder stack, linear code, mirrored sigmoid decoder."""

    @torch.no_grad()
    def load_rbms(self, rbms: Sequence[RBM]) -> "DeepAutoencoder":
        """Unroll a stack of RBMs (bottom first) into this network's weights (H&S 2006, Fig. 1)."""
        encoder_layers = list(self.encoder.body.layers) + [self.encoder.head.proj]
        decoder_layers = list(self.decoder.body.layers)[::-1]  # bottom (output) layer first
        if len(rbms) != len(encoder_layers):
            raise ValueError(f"{len(rbms)} RBMs for {len(encoder_layers)} encoder layers")
        for rbm, enc, dec in zip(rbms, encoder_layers, decoder_layers):
            enc.weight.copy_(rbm.weight)             # (H, V): up-pass
            enc.bias.copy_(rbm.hidden_bias)
            dec.weight.copy_(rbm.weight.T)           # (V, H): down-pass with the same weights
            dec.bias.copy_(rbm.visible_bias)
        return self

    @classmethod
    def from_rbms(cls, rbms: Sequence[RBM], likelihood: str = "bernoulli") -> "DeepAutoencoder":
        sizes = [rbms[0].num_visible] + [r.num_hidden for r in rbms]
        return build_deep_ae_sizes(sizes, likelihood).load_rbms(rbms)


def build_deep_ae_sizes(sizes: Sequence[int], likelihood: str = "bernoulli", sigma: float = 1.0) -> DeepAutoencoder:
    """sizes = [D, h₁, …, h_{L−1}, J]: encoder D→…→h_{L−1} (sigmoid), linear code J, mirrored decoder."""
    hidden = list(sizes[:-1])
    encoder = Encoder(SigmoidStack(hidden, linear_last=False), PointLatent(hidden[-1], sizes[-1]))
    decoder = Decoder(SigmoidStack(list(reversed(sizes)), linear_last=True), build_likelihood(likelihood, sigma))
    return DeepAutoencoder(encoder, decoder)


def build_deep_ae(cfg: ModelConfig, shape: DataShape) -> DeepAutoencoder:
    return build_deep_ae_sizes([shape.data_dim, *cfg.hidden_dims, cfg.latent_dim], cfg.likelihood, cfg.sigma)


def pretrain_rbm_stack(x: torch.Tensor, sizes: Sequence[int], *, epochs: int, batch_size: int = 100,
                       learning_rate: float = 0.1, top_learning_rate: float = 0.001, weight_decay: float = 2e-4,
                       progress: bool = True) -> list[RBM]:
    """Greedy layer-wise CD-1 pretraining (H&S 2006, supporting material).

    Bernoulli–Bernoulli RBMs for the hidden layers, a Bernoulli–linear RBM on top (smaller learning
    rate, as its linear units are unbounded); momentum 0.5 for the first 5 epochs, then 0.9; weight
    decay 2·10⁻⁴. Each RBM's hidden probabilities (its mean-field up-pass) feed the next.
    """
    rbms: list[RBM] = []
    data = x
    num_layers = len(sizes) - 1
    for i, (v, h) in enumerate(zip(sizes[:-1], sizes[1:])):
        top = i == num_layers - 1
        rbm = RBM(v, h, visible="bernoulli", hidden="linear" if top else "bernoulli").to(x.device)
        rbm.init_visible_bias(data)
        lr = top_learning_rate if top else learning_rate
        n = len(data)
        bar = tqdm(range(epochs), desc=f"pretraining RBM {i + 1}/{num_layers} ({v}-{h})", disable=not progress,
                   leave=False)
        for epoch in bar:
            momentum = 0.5 if epoch < 5 else 0.9
            order = torch.randperm(n, device=data.device)
            for start in range(0, n - batch_size + 1, batch_size):
                rbm.cd_step(data[order[start:start + batch_size]], 1, learning_rate=lr, momentum=momentum,
                            weight_decay=weight_decay, monitor=False)
        with torch.no_grad():
            data = rbm.hidden_given_visible(data).mean  # (N, h): probabilities, or the linear units' means
        rbms.append(rbm)
    return rbms


def pretrain_deep_ae(model: DeepAutoencoder, x: torch.Tensor, run_cfg, progress: bool = True) -> None:
    """The ``deep-ae`` initializer: RBM pretraining when ``pretrain == "rbm"``, else nothing."""
    cfg = run_cfg.model
    if cfg.pretrain == "none":
        return
    sizes = [x.shape[1], *cfg.hidden_dims, cfg.latent_dim]
    model.load_rbms(pretrain_rbm_stack(x, sizes, epochs=cfg.pretrain_epochs, progress=progress))
