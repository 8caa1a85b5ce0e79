"""VAE.to_torch(): the model as a torch.nn.Module (torch is imported only here)."""

import numpy as np
import torch
from torch import nn


def _activation(name, x):
    # The formulas of host/elementwise.h, so that the two agree to rounding.
    if name == "relu":
        return torch.relu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "leaky_relu":
        return torch.where(x > 0, x, 0.01 * x)
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))  # softplus


class TorchVAE(nn.Module):
    """The encoder (hidden layers, then a head giving mu and log sigma^2 of q(z|x)) and the
    decoder, with a vae model's weights. forward(x): (mu, logvar, the decoder's output at
    z = mu); decode_mean(z): sigmoid of the logits (Bernoulli), exp of the log-rate (Poisson)
    or the mean (Gaussian), in the
    data's units when the model is standardized (the decoder's output is in the scaled ones).
    A conditional model's calls take c, the condition rows (N, C): one-hot classes or covariates."""

    def __init__(self, config, params):
        super().__init__()
        self.activation, self.likelihood, self.latent = config["activation"], config["likelihood"], config["latent"]
        self.log1p_input = config.get("log1p_input", False)  # the encoder sees log(1 + x)
        self.input_dim = config["input_dim"]  # per-item zero inflation: the decoder's outputs [D, 2D) are its logits

        def linear(prefix):
            w = torch.from_numpy(np.array(params[prefix + ".weight"]))
            layer = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(torch.from_numpy(np.array(params[prefix + ".bias"])))
            return layer

        self.encoder = nn.ModuleList(linear("encoder.%d" % i) for i in range(len(config["hidden"])))
        self.head = linear("encoder.head")
        self.decoder = nn.ModuleList(linear("decoder.%d" % i) for i in range(len(config["decoder_hidden"])))
        self.out = linear("decoder.out")
        if "decoder.logvar" in params:
            self.logvar = nn.Parameter(torch.from_numpy(np.array(params["decoder.logvar"])))
        # standardize=True: the model sees (x - mean) / std; decode_mean gives the data's units
        self.standardized = "standardize.std" in params
        if self.standardized:
            self.register_buffer("x_mean", torch.from_numpy(np.array(params["standardize.mean"])))
            self.register_buffer("x_std", torch.from_numpy(np.array(params["standardize.std"])))

    def encode(self, x, c=None):
        h = (x - self.x_mean) / self.x_std if self.standardized else x
        if self.log1p_input:
            h = torch.log1p(h)
        if c is not None:  # a conditional model: [x, c]
            h = torch.cat([h, c.to(h.dtype)], dim=1)
        for layer in self.encoder:
            h = _activation(self.activation, layer(h))
        head = self.head(h)
        return head[:, :self.latent], head[:, self.latent:]

    def decode(self, z, c=None):
        h = z if c is None else torch.cat([z, c.to(z.dtype)], dim=1)  # a conditional model: [z, c]
        for layer in self.decoder:
            h = _activation(self.activation, layer(h))
        return self.out(h)

    def decode_mean(self, z, c=None):
        out = self.decode(z, c)[:, :self.input_dim]
        if self.likelihood == "bernoulli":
            return torch.sigmoid(out)
        if self.likelihood in ("poisson", "negative-binomial", "zinb"):  # log-rate, log-mean
            return torch.exp(out)
        return out * self.x_std + self.x_mean if self.standardized else out

    def forward(self, x, c=None):
        mu, logvar = self.encode(x, c)
        return mu, logvar, self.decode(mu, c)


def module(config, params):
    return TorchVAE(config, params)
