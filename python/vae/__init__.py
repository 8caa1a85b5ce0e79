"""vae: variational autoencoders trained by libvae (fused CUDA kernels, or the CPU path that
checks them), from Python, with numpy arrays and PyTorch tensors in and out.

    import vae
    X, Xt = vae.read("train-images-idx3-ubyte.gz"), vae.read("t10k-images-idx3-ubyte.gz")
    m = vae.VAE(hidden=[400], latent=20, likelihood="bernoulli", device="auto", seed=1)
    history = m.fit(X, epochs=10, test=Xt)   # one dict per epoch: the columns of metrics.csv
    mu, logvar = m.encode(Xt)
    m.save("model.safetensors")              # vae eval --model reads it

A conditional VAE takes each item's condition with its data: class labels (integers, one-hot
encoded) or covariates (floats, (N, C)), as condition= of fit, encode, decode, sample,
evaluate and log_likelihood (fit's test set: test_condition=):

    y, yt = vae.read_labels(".../train-labels-idx1-ubyte.gz"), vae.read_labels(".../t10k-labels-idx1-ubyte.gz")
    m.fit(X, test=Xt, condition=y, test_condition=yt)
    threes = m.sample(16, condition=3)

Every training and model option of `vae train` is a keyword of VAE() and of fit(), named as
its flag with _ for - (kl_warmup=, likelihood=, optimizer=, ...): vae.options() lists them
with their help. The model is the library's own (a vae::Session), so it trains, step for
step, as `vae train` does.
"""

import json
import os
import sys
import warnings

import numpy as np

from . import _core
from ._core import Error

__all__ = ["VAE", "Error", "read", "read_labels", "options"]


def _keywords():
    # Every option of the table but a run's files, OUT and run controls (here the data are
    # arrays, and save() writes the model), and the processes of an mpirun launch (a model
    # here trains in this one process).
    return {o["key"]: o for o in _core.options()
            if o["kind"] != "str" and o["group"] != "Output" and o["recorded"] and o["key"] != "processes"}


_OPTIONS = _keywords()


def options():
    """The keywords: a list of dicts (key, flag, help, default, kind, choices, resumable)."""
    return [dict(o) for o in _OPTIONS.values()]


def read(path):
    """An IDX (.gz or raw) or NPY file as a (N, D) array: uint8 as stored, or float32."""
    return _core.read(os.fspath(path))


def read_labels(path):
    """An IDX labels file (.gz or raw) as a 1-D uint8 array (an NPY of labels: numpy.load)."""
    return _core.read_labels(os.fspath(path))


def _integer(value, name, least, most):
    """An integer argument in [least, most]: TypeError for another type, ValueError out of range."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError("%s: expected an integer, got %r" % (name, value))
    if not least <= int(value) <= most:
        raise ValueError("%s: expected an integer in [%d, %d], got %d" % (name, least, most, int(value)))
    return int(value)


def _host_array(x, name):
    """A tensor (torch, or anything with __dlpack__; on a GPU, or needing grad) as a numpy array
    on the host; anything else as it is."""
    if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray):
        device_type = x.__dlpack_device__()[0] if hasattr(x, "__dlpack_device__") else 1
        if device_type != 1 and hasattr(x, "cpu"):  # a CUDA tensor: through the host
            x = x.detach().cpu() if hasattr(x, "detach") else x.cpu()
        if hasattr(x, "detach"):
            x = x.detach()
        try:
            return np.from_dlpack(x)
        except (RuntimeError, TypeError, BufferError) as e:
            raise TypeError("%s: a tensor of dtype %s cannot be read (%s); give %s"
                            % (name, getattr(x, "dtype", "?"), e, _DTYPES)) from None
    return x


def _condition(c, name, n=None):
    """A condition as the core takes it: None; class labels as a 1-D int64 array (from any
    integer array of shape (N,) or (N, 1), or one class k for all n items); covariates as a
    2-D float32 array (a 1-D float array: one covariate per item)."""
    if c is None:
        return None
    if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) and n is not None:
        return np.full(n, int(c), dtype=np.int64)
    a = np.asarray(_host_array(c, name))
    if a.dtype.kind in "iu":
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise ValueError("%s: class labels are one per item, shape (N,) or (N, 1); got shape %s" % (name, a.shape))
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind == "f":
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError("%s: covariates are (N, C); got shape %s" % (name, a.shape))
        return np.ascontiguousarray(a, dtype=np.float32)
    raise TypeError("%s: expected class labels (integers) or covariates (floats), got dtype %s" % (name, a.dtype))


def _text(key, value):
    """A keyword's value as the command line writes it; TypeError for a value of the wrong type."""
    kind = _OPTIONS[key]["kind"]
    integral = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError("%s: expected True or False, got %r" % (key, value))
        return "true" if value else "false"
    if kind == "int":
        if not integral:
            raise TypeError("%s: expected an integer, got %r" % (key, value))
        return str(int(value))
    if kind == "float":
        if not (integral or isinstance(value, (float, np.floating))):
            raise TypeError("%s: expected a number, got %r" % (key, value))
        return repr(float(value))
    if kind == "widths":
        if isinstance(value, str):
            return value
        if integral:
            return str(int(value))
        try:
            widths = [int(w) if isinstance(w, (int, np.integer)) and not isinstance(w, bool) else None for w in value]
        except TypeError:
            widths = [None]
        if None in widths:
            raise TypeError("%s: expected a list of layer widths such as [512, 256], got %r" % (key, value))
        return ",".join(str(w) for w in widths) if widths else "none"
    if not isinstance(value, str):
        raise TypeError("%s: expected one of %s, got %r" % (key, ", ".join(_OPTIONS[key]["choices"]), value))
    return value


def _configure(base, keywords):
    """The configuration (config.json's text) `base` with the keywords applied; ValueError for a
    value the option does not take, TypeError for an unknown keyword."""
    unknown = [k for k in keywords if k not in _OPTIONS]
    if unknown:
        raise TypeError("unknown keyword%s %s; vae.options() lists them"
                        % ("s" if len(unknown) > 1 else "", ", ".join(repr(k) for k in unknown)))
    return _core.configure(base, [(k, _text(k, v)) for k, v in keywords.items()])


_DTYPES = "float32, float64, uint8, int32 or int64"


def _array(x, name):
    """x as a C-contiguous 2-D uint8 or float32 numpy array (uint8: pixels, read as x / 255,
    or the counts 0..255 under a count likelihood; int32 and int64: counts, as float32)."""
    a = np.asarray(_host_array(x, name))
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    elif a.dtype in (np.int32, np.int64):
        if a.size and (a.min() < -2 ** 24 or a.max() > 2 ** 24):
            raise ValueError("%s: an integer beyond 2^24, which float32 holds exactly" % name)
        a = a.astype(np.float32)
    elif a.dtype not in (np.float32, np.uint8):
        raise TypeError("%s: dtype %s is not accepted; give %s" % (name, a.dtype, _DTYPES))
    if a.ndim != 2:
        raise ValueError("%s: expected a 2-D array (items, features), got shape %s" % (name, a.shape))
    return np.ascontiguousarray(a)


class _Progress:
    """A one-line progress bar on stderr, drawn when it is a terminal or in a notebook."""

    def __init__(self, on):
        if on is None:
            on = sys.stderr.isatty() or "ipykernel" in sys.modules
        self.on, self.drawn = bool(on), False

    def __call__(self, epoch, done, total, samples, seconds):
        if not self.on:
            return
        width = 30
        filled = width * done // max(total, 1)
        rate = samples / seconds if seconds > 0 else 0.0
        sys.stderr.write("\repoch %d [%s%s] %3d%%  %.0f samples/s" % (epoch, "#" * filled, "." * (width - filled),
                                                                   100 * done // max(total, 1), rate))
        sys.stderr.flush()
        self.drawn = True

    def close(self):
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.drawn = False


class VAE:
    """A variational autoencoder, trained by libvae on the device `device` picks (auto: the GPU
    when one is usable). Keywords: every option of `vae train` (vae.options()); input_dim,
    when not given, is taken from the first data fit() sees."""

    def __init__(self, **keywords):
        self._config = _configure("", keywords)
        self._input_given = "input_dim" in keywords
        self._model = None

    # ---- the model ------------------------------------------------------------------------
    @classmethod
    def load(cls, path):
        """A model saved by save(), or a `vae train` run (its OUT or its model.safetensors),
        with its optimizer state and data position: fit() continues it as `vae train --resume` would."""
        self = cls.__new__(cls)
        self._model = _core.Model.load(os.fspath(path))
        self._config = self._model.config_json()
        self._input_given = True
        return self

    def save(self, path):
        """Writes the model, its optimizer state and data position as `vae train` writes its
        checkpoint (atomically): vae eval --model, and VAE.load, read it."""
        self._built().save(os.fspath(path))

    @property
    def config(self):
        """The configuration, as config.json holds it: {"model": {...}, "train": {...}}."""
        return json.loads(self._config)

    @property
    def device(self):
        """The backend that holds the model, e.g. 'cpu (fp32, ...)' or 'cuda (NVIDIA H200, sm_90)'."""
        return self._built().device

    @property
    def epochs_done(self):
        """Epochs trained so far (a stopped epoch counts when it is finished)."""
        return self._built().position[0] if self._model else 0

    def _built(self, dim=None, condition=None):
        if self._model is None:
            given = {}
            if not self._input_given:
                if dim is None:
                    raise Error("the model has no input_dim yet: give VAE(input_dim=...) or fit() it first")
                given["input_dim"] = dim
            if condition is not None and self.config["model"]["condition_kind"] == "none":
                # the first fit with conditions makes a conditional model: their kind and width
                classes = self.config["train"]["condition_classes"]
                given["condition_kind"], given["condition_dim"] = _core.condition_shape(condition, classes)
            if given:
                self._config = _configure(self._config, given)
            self._model = _core.Model(self._config)
        return self._model

    # ---- training -------------------------------------------------------------------------
    def fit(self, X, epochs=None, test=None, callback=None, progress=None, condition=None, test_condition=None,
            **keywords):
        """Trains `epochs` epochs (default: the epochs option) on X from where the model stands;
        two fit(X, epochs=1) give the parameters one fit(X, epochs=2) gives, bit for bit. A
        learning-rate schedule runs over the epochs option (VAE(epochs=N)), not over this call's.
        test: evaluated after each epoch (else the test_* entries are NaN). callback(epoch_dict)
        runs after each epoch and may return False to stop. progress: a bar on stderr (None: when
        interactive), or a function (epoch, done, total, samples, seconds) called as steps go. Keywords change options: before
        the first step any of them, after it those a resumed run may change (vae train --resume).
        Returns one dict per epoch: the columns of metrics.csv. Ctrl-C stops after the current
        step, leaves the model usable, and raises KeyboardInterrupt. condition, test_condition:
        a conditional VAE's conditions of X's and test's items (the first fit makes the model
        conditional): class labels, one-hot encoded (condition_classes= classes; default the
        largest label + 1), or covariates (N, C)."""
        X = _array(X, "X")
        test = None if test is None else _array(test, "test")
        condition = _condition(condition, "condition")
        test_condition = _condition(test_condition, "test_condition")
        if test is not None and (condition is None) != (test_condition is None):
            raise ValueError("condition and test_condition go together: give the conditions of X and of test")
        model = self._built(X.shape[1], condition)
        if keywords:
            self._reconfigure(keywords)
        if epochs is None:
            epochs = self.config["train"]["epochs"]
        if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 0:
            raise TypeError("epochs: expected an integer >= 0, got %r" % (epochs,))
        planned = self.config["train"]["epochs"]
        if self.config["train"]["lr_schedule"] != "constant" and self.epochs_done + epochs > planned:
            warnings.warn("lr_schedule=%r runs over the epochs option (%d); this fit goes to epoch %d. "
                          "Give VAE(..., epochs=N) for a schedule over N epochs"
                          % (self.config["train"]["lr_schedule"], planned, self.epochs_done + epochs))
        bar = progress if callable(progress) else _Progress(progress)
        try:
            return model.fit(X, test, int(epochs), callback, bar, condition, test_condition)
        finally:
            if isinstance(bar, _Progress):
                bar.close()

    def _reconfigure(self, keywords):
        new = _configure(self._config, keywords)
        if new == self._config:
            return
        if self._model.started:
            old, now = self.config, json.loads(new)
            changed = [k for s in ("model", "train") for k in now[s] if now[s][k] != old[s][k]]
            fixed = [k for k in changed if not _OPTIONS[k]["resumable"]]
            if fixed:
                allowed = ", ".join(k for k, o in _OPTIONS.items() if o["resumable"])
                raise ValueError("%s cannot change once the model has trained (only %s can); make a new VAE"
                                 % (", ".join(fixed), allowed))
        self._model.reconfigure(new)
        self._config = new

    # ---- using the model ------------------------------------------------------------------
    def encode(self, X, condition=None):
        """The posterior q(z|x) of each item: (mu, logvar), float32 arrays (N, Z) each.
        condition: a conditional model's conditions of the items (as fit takes them)."""
        return self._built().encode(_array(X, "X"), _condition(condition, "condition"))

    def decode(self, z, condition=None):
        """The decoder's means for codes z (N, Z): sigmoid of the logits (Bernoulli) or the mean.
        condition: a conditional model's condition of each code, or one class k for all."""
        z = np.ascontiguousarray(np.asarray(_host_array(z, "z"), dtype=np.float32))
        if z.ndim != 2:
            raise ValueError("z: expected a 2-D array (codes, latent), got shape %s" % (z.shape,))
        return self._built().decode(z, _condition(condition, "condition", len(z)))

    def sample(self, n, seed=0, condition=None):
        """Decoder means for n codes drawn from the prior (the draws of `vae sample --seed`);
        condition: a conditional model's class k for all n (vae sample --condition k), or the
        n samples' conditions."""
        n = _integer(n, "n", 1, 2**31 - 1)
        seed = _integer(seed, "seed", 0, 2**64 - 1)
        return self._built().sample(n, seed, _condition(condition, "condition", n))

    def evaluate(self, X, condition=None):
        """{"loss", "recon", "kl"} per data point: the -ELBO and its parts, as vae train's test columns."""
        return self._built().evaluate(_array(X, "X"), _condition(condition, "condition"))

    def log_likelihood(self, X, k=1000, condition=None):
        """Estimates of log p(x) per data point with k importance samples, as `vae eval --iw k`:
        {"elbo", "iwae", "prior", "gap", "exact"} ("exact": the closed form, for a linear
        Gaussian decoder; else None)."""
        k = _integer(k, "k", 1, 2**31 - 1)
        return self._built().log_likelihood(_array(X, "X"), k, _condition(condition, "condition"))

    def parameters(self):
        """The parameters by name (encoder.0.weight, ...), numpy arrays of their shapes; with
        standardize=True also the training set's scaling, standardize.mean and standardize.std."""
        return self._built().parameters()

    def to_torch(self):
        """A torch.nn.Module with these weights: forward(x) gives (mu, logvar, decoder output at
        z = mu) (the output: logits for Bernoulli, the mean for Gaussian, the log-rate or log-mean
        for the count likelihoods); encode, decode too.
        A standardized model's module scales x on the way in and the means on the way out."""
        try:
            from ._torch import module
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            raise ImportError("VAE.to_torch() needs PyTorch, which is not installed here: pip install torch") from None
        return module(self.config["model"], self.parameters())

    def __repr__(self):
        m = self.config["model"]
        widths = "-".join(str(w) for w in [m["input_dim"]] + m["hidden"] + [m["latent"]])
        return "vae.VAE(%s, %s, %s, epochs done: %d)" % (widths, m["activation"], m["likelihood"], self.epochs_done)
