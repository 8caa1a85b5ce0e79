"""The Python package as a user meets it (pip install .): the same numbers as the `vae`
command, continuation bit for bit, Ctrl-C, callbacks, errors, and PyTorch in and out.
tests/python/run.sh builds the package in a fresh venv and runs these."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import vae

VAE_COMMAND = os.path.join(sys.prefix, "bin", "vae")  # the console script the package installs
SMALL = dict(hidden=[16], latent=3, batch=32, epochs=3, device="cpu", threads=1, seed=7)


def cli_flags(options):
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return flags


def vae_command(*args):
    r = subprocess.run([VAE_COMMAND, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp("data")
    x = (rng.random((301, 20)) < 0.3).astype(np.float32)  # odd sizes, never all zero
    xt = (rng.random((97, 20)) < 0.3).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "xt.npy", xt)
    return d, x, xt


@pytest.fixture(scope="module")
def cli_run(data):
    """`vae train` on the small data: its OUT."""
    d, _, _ = data
    out = d / "run"
    vae_command("train", "--train", str(d / "x.npy"), "--test", str(d / "xt.npy"), "--out", str(out),
                *cli_flags(SMALL))
    return out


def test_fit_gives_what_vae_train_gives(data, cli_run):
    _, x, xt = data
    m = vae.VAE(**SMALL)
    history = m.fit(x, test=xt)
    rows = [line.split(",") for line in (cli_run / "metrics.csv").read_text().splitlines()[1:]]
    assert len(history) == len(rows) == SMALL["epochs"]
    for h, row in zip(history, rows):  # metrics.csv's six decimals
        for i, key in enumerate(["train_loss", "test_loss", "test_recon", "test_kl"], start=1):
            assert "%.6f" % h[key] == row[i], (key, h, row)
    run = vae.VAE.load(cli_run)
    for name, value in run.parameters().items():  # the parameters, bit for bit
        assert np.array_equal(value, m.parameters()[name]), name
    assert run.epochs_done == m.epochs_done == 3


def test_cli_and_python_models_evaluate_alike(data, cli_run, tmp_path):
    d, _, xt = data
    run = vae.VAE.load(cli_run)
    vae_command("eval", "--model", str(cli_run), "--data", str(d / "xt.npy"), "--iw", "40", "--device", "cpu",
                "--json", str(tmp_path / "eval.json"))
    said = json.loads((tmp_path / "eval.json").read_text())
    ll = run.log_likelihood(xt, k=40)
    assert ll["iwae"] == said["log_px_iwae"] and ll["prior"] == said["log_px_prior"]
    assert -ll["elbo"] == pytest.approx(said["neg_elbo"], rel=1e-12) and ll["exact"] is None
    # A model Python saves evaluates in vae eval as in Python.
    m = vae.VAE(**SMALL)
    m.fit(data[1], epochs=1)
    m.save(tmp_path / "py.safetensors")
    vae_command("eval", "--model", str(tmp_path / "py.safetensors"), "--data", str(d / "xt.npy"), "--iw", "40",
                "--device", "cpu", "--json", str(tmp_path / "py.json"))
    assert json.loads((tmp_path / "py.json").read_text())["log_px_iwae"] == m.log_likelihood(xt, k=40)["iwae"]
    mu, logvar = run.encode(xt)
    assert mu.shape == logvar.shape == (97, 3) and mu.dtype == np.float32
    assert run.evaluate(xt)["loss"] == pytest.approx(-ll["elbo"], rel=0.05)  # one sample against forty


def test_two_fits_continue_as_one_and_a_saved_model_continues_too(data, tmp_path):
    _, x, xt = data
    whole = vae.VAE(**SMALL)
    h = whole.fit(x, epochs=2, test=xt)
    parts = vae.VAE(**SMALL)
    h1 = parts.fit(x, epochs=1, test=xt)
    parts.save(tmp_path / "mid.safetensors")
    h2 = parts.fit(x, epochs=1, test=xt)
    assert [e["train_loss"] for e in h1 + h2] == [e["train_loss"] for e in h]
    loaded = vae.VAE.load(tmp_path / "mid.safetensors")
    h3 = loaded.fit(x, epochs=1, test=xt)
    assert h3[0]["train_loss"] == h[1]["train_loss"] and h3[0]["epoch"] == 2
    for name, value in whole.parameters().items():
        assert np.array_equal(value, parts.parameters()[name]) and np.array_equal(value, loaded.parameters()[name])


def test_ctrl_c_stops_after_a_step_and_the_model_continues(tmp_path):
    rng = np.random.default_rng(5)
    x = (rng.random((100000, 64)) < 0.4).astype(np.float32)  # 50000 steps: seconds
    options = dict(hidden=[64], latent=4, batch=2, device="cpu", threads=1)
    m = vae.VAE(**options)
    timers = []

    def progress(epoch, done, total, samples, seconds):  # the first call: Ctrl-C 50 ms later, mid-step
        if not timers:
            timers.append(threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)))
            timers[0].start()

    with pytest.raises(KeyboardInterrupt):
        m.fit(x, epochs=1, progress=progress)
    timers[0].join()
    epoch, batch, step = m._model.position
    assert epoch == 0 and 1 < batch < 50000 and step == batch, m._model.position  # stopped mid-epoch
    assert np.isfinite(m.evaluate(x[:50])["loss"])  # usable
    m.save(tmp_path / "stopped.safetensors")
    rest = m.fit(x, epochs=1, progress=False)
    whole = vae.VAE(**options)
    once = whole.fit(x, epochs=1, progress=False)
    assert rest[0]["train_loss"] == once[0]["train_loss"]
    for name, value in whole.parameters().items():
        assert np.array_equal(value, m.parameters()[name]), name
    resumed = vae.VAE.load(tmp_path / "stopped.safetensors")
    assert resumed.fit(x, epochs=1, progress=False)[0]["train_loss"] == once[0]["train_loss"]


def test_the_callback_may_stop_and_the_gil_is_released(data):
    _, x, _ = data
    seen = []
    m = vae.VAE(**SMALL)
    history = m.fit(x, epochs=5, callback=lambda e: seen.append(e["epoch"]) or e["epoch"] < 2)
    assert seen == [1, 2] and len(history) == 2 and m.epochs_done == 2
    ticks = [0]
    running = [True]

    def tick():
        while running[0]:
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=tick, daemon=True)
    big = np.tile(x, (40, 1))
    t.start()
    try:
        before = ticks[0]
        vae.VAE(**dict(SMALL, batch=4)).fit(big, epochs=1, progress=False)
        after = ticks[0]
    finally:
        running[0] = False
        t.join()
    assert after - before > 20, "the other thread barely ran while fit trained"


def test_inputs_numpy_and_torch_and_views(data):
    _, x, xt = data
    m = vae.VAE(**SMALL)
    m.fit(x, epochs=1)
    want = m.evaluate(xt)["loss"]
    assert m.evaluate(xt.astype(np.float64))["loss"] == want
    assert m.evaluate(np.asfortranarray(xt))["loss"] == want  # a non-contiguous view is copied
    u8 = (xt * 255).astype(np.uint8)  # uint8 is divided by 255
    assert m.evaluate(u8)["loss"] == pytest.approx(want, rel=1e-6)
    torch = pytest.importorskip("torch")
    assert m.evaluate(torch.from_numpy(xt))["loss"] == want


def test_bad_input_raises_and_writes_nothing(data, tmp_path):
    _, x, xt = data
    m = vae.VAE(input_dim=20, **SMALL)
    with pytest.raises(TypeError, match="X: dtype int16 is not accepted; give float32, float64, uint8, int32 or int64"):
        m.fit(x.astype(np.int16))
    with pytest.raises(ValueError, match="expected a 2-D array"):
        m.fit(x[0])
    with pytest.raises(ValueError, match="has 5 features per item but the model expects 20"):
        m.fit(np.ascontiguousarray(x[:, :5]))
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="value nan at item 4, feature 2 is not finite"):
        m.fit(bad)
    with pytest.raises(ValueError, match="is outside \\[0, 1\\], which the Bernoulli likelihood needs"):
        m.fit(x * 2)
    assert m.epochs_done == 0
    with pytest.raises(TypeError, match="unknown keyword 'latnet'"):
        vae.VAE(latnet=3)
    with pytest.raises(ValueError, match="latent: must be an integer in \\[1, 65536\\], got '0'"):
        vae.VAE(latent=0)
    with pytest.raises(ValueError, match="weight_decay is AdamW's decoupled weight decay"):
        vae.VAE(weight_decay=0.1)
    with pytest.raises(TypeError, match="latent: expected an integer"):
        vae.VAE(latent=2.5)
    m.fit(x, epochs=1)
    with pytest.raises(ValueError, match="batch cannot change once the model has trained"):
        m.fit(x, batch=64)
    with pytest.raises(vae.Error, match="no such file"):
        vae.VAE.load(tmp_path / "missing.safetensors")
    assert issubclass(vae.Error, RuntimeError)
    good = tmp_path / "good.safetensors"
    m.save(good)
    before = good.read_bytes()
    (tmp_path / "adir").mkdir()
    with pytest.raises(vae.Error, match="it is a directory"):
        m.save(tmp_path / "adir")
    assert list((tmp_path / "adir").iterdir()) == [] and good.read_bytes() == before


def test_to_torch_gives_the_same_numbers(data):
    torch = pytest.importorskip("torch")
    _, x, xt = data
    for options in [SMALL, dict(SMALL, hidden=[9, 7], activation="softplus", likelihood="gaussian", learn_sigma=True)]:
        m = vae.VAE(**options)
        m.fit(x, epochs=1)
        t = m.to_torch()
        mu, logvar = m.encode(xt)
        with torch.no_grad():
            tmu, tlogvar, out = t(torch.from_numpy(xt))
            mean = t.decode_mean(tmu)
        np.testing.assert_allclose(tmu.numpy(), mu, rtol=0, atol=1e-6)
        np.testing.assert_allclose(tlogvar.numpy(), logvar, rtol=0, atol=1e-6)
        np.testing.assert_allclose(mean.numpy(), m.decode(mu), rtol=0, atol=1e-6)
        assert isinstance(t, torch.nn.Module) and out.shape == (97, 20)


def test_read_and_sample(data):
    d, x, _ = data
    assert np.array_equal(vae.read(d / "x.npy"), x)
    m = vae.VAE(**SMALL)
    m.fit(x, epochs=1)
    s = m.sample(6, seed=4)
    assert s.shape == (6, 20) and np.array_equal(s, m.sample(6, seed=4)) and not np.array_equal(s, m.sample(6, seed=5))
    assert ((s >= 0) & (s <= 1)).all()
    keys = {o["key"] for o in vae.options()}
    assert {"kl_warmup", "likelihood", "optimizer", "hidden", "latent", "batch"} <= keys and "out" not in keys


def test_the_progress_bar_is_drawn_when_asked(data, capsys):
    _, x, _ = data
    vae.VAE(**SMALL).fit(x, epochs=1, progress=True)
    err = capsys.readouterr().err
    assert "\repoch 1 [" in err and "100%" in err and err.endswith("\n")
    vae.VAE(**SMALL).fit(x, epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def test_real_valued_data_and_standardize(tmp_path):
    rng = np.random.default_rng(11)
    x = (rng.normal(size=(203, 6)) * [1, 2, 4, 8, 0.5, 3] + [-10, 0, 5, 20, 1, -3]).astype(np.float32)
    xt = x[:41].copy()
    options = dict(SMALL, likelihood="gaussian", learn_sigma=True)
    with pytest.raises(ValueError, match="is outside \\[0, 1\\], which the Bernoulli likelihood needs"):
        vae.VAE(**SMALL).fit(x, epochs=1)
    plain, scaled = vae.VAE(**options), vae.VAE(**options, standardize=True)
    plain.fit(x, epochs=3)
    scaled.fit(x, epochs=3)
    p = scaled.parameters()
    np.testing.assert_allclose(p["standardize.mean"], x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p["standardize.std"], x.astype(np.float64).std(0), rtol=1e-5, atol=1e-5)
    assert "standardize.mean" not in plain.parameters()
    # decode and sample give the data's units: the samples' feature means follow the data's
    s = scaled.sample(2000, seed=1)
    assert np.all(np.abs(s.mean(0) - x.mean(0)) < 0.5 * x.std(0))
    # a saved standardized model loads with its scaling and answers alike
    scaled.save(tmp_path / "s.safetensors")
    back = vae.VAE.load(tmp_path / "s.safetensors")
    mu, _ = scaled.encode(xt)
    assert np.array_equal(back.encode(xt)[0], mu) and np.array_equal(back.decode(mu), scaled.decode(mu))
    assert back.evaluate(xt) == scaled.evaluate(xt)
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        t = scaled.to_torch()
        tmu, _, _ = t(torch.from_numpy(xt))
        np.testing.assert_allclose(tmu.numpy(), mu, rtol=0, atol=1e-5)
        np.testing.assert_allclose(t.decode_mean(tmu).numpy(), scaled.decode(mu), rtol=1e-5, atol=1e-4)


def test_counts_under_the_poisson_likelihood():
    rng = np.random.default_rng(5)
    rates = np.where(np.arange(40)[:, None] % 2 == 0, 8.0, 0.5) * np.ones((40, 6))
    counts = rng.poisson(rates).astype(np.int64)
    options = dict(SMALL, likelihood="poisson", log1p_input=True)
    a, b, c = vae.VAE(**options), vae.VAE(**options), vae.VAE(**options)
    a.fit(counts, epochs=2)  # int64: counts as they are
    b.fit(counts.astype(np.float32), epochs=2)  # floats holding integers
    c.fit(counts.astype(np.uint8), epochs=2)  # uint8: the counts 0..255, not x / 255
    assert np.array_equal(a.parameters()["decoder.out.weight"], b.parameters()["decoder.out.weight"])
    assert np.array_equal(a.parameters()["decoder.out.weight"], c.parameters()["decoder.out.weight"])
    assert (a.sample(5, seed=1) > 0).all()  # rates
    with pytest.raises(ValueError, match="is not a count \\(a non-negative integer\\)"):
        vae.VAE(**options).fit(counts + 0.5, epochs=1)
    with pytest.raises(ValueError, match="beyond 2\\^24"):
        vae.VAE(**options).fit(counts * 2 ** 25, epochs=1)
    torch = pytest.importorskip("torch")
    x = counts[:7].astype(np.float32)
    mu, logvar = a.encode(x)
    with torch.no_grad():
        t = a.to_torch()
        tmu, tlogvar, _ = t(torch.from_numpy(x))
        rates = t.decode_mean(tmu)
    np.testing.assert_allclose(tmu.numpy(), mu, rtol=0, atol=1e-5)
    np.testing.assert_allclose(rates.numpy(), a.decode(mu), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("likelihood", ["negative-binomial", "zinb"])
def test_the_negative_binomial_learns_a_dispersion_per_feature(tmp_path, likelihood):
    rng = np.random.default_rng(8)
    counts = rng.negative_binomial(2, 2 / (2 + np.tile([1.0, 4.0, 9.0], 2)), size=(60, 6))
    m = vae.VAE(**dict(SMALL, likelihood=likelihood, log1p_input=True))
    m.fit(counts, epochs=3)
    log_theta = m.parameters()["decoder.log_theta"]
    assert log_theta.shape == (6,) and np.isfinite(log_theta).all() and np.any(log_theta != 0)
    if likelihood == "zinb":  # and the zero-inflation logits, from their start at -2
        zi = m.parameters()["decoder.zi_logit"]
        assert zi.shape == (6,) and np.isfinite(zi).all() and np.any(zi != -2)
    m.save(tmp_path / "nb.safetensors")
    back = vae.VAE.load(tmp_path / "nb.safetensors")
    assert back.evaluate(counts) == m.evaluate(counts)
    assert (m.decode(m.encode(counts)[0]) > 0).all()  # means exp(log-mean)


def test_a_conditional_model_takes_labels_and_covariates(data, tmp_path):
    d, x, xt = data
    y, yt = np.arange(len(x)) % 3, (np.arange(len(xt)) % 3).reshape(-1, 1)  # labels: 1-D, or a column
    m = vae.VAE(**SMALL)
    m.fit(x, epochs=2, test=xt, condition=y, test_condition=yt)
    assert m.config["model"]["condition_kind"] == "classes" and m.config["model"]["condition_dim"] == 3
    p = m.parameters()
    assert p["encoder.0.weight"].shape == (16, 20 + 3) and p["decoder.0.weight"].shape == (16, 3 + 3)
    # The condition is used: other classes, other numbers.
    assert m.evaluate(xt, condition=yt)["loss"] != m.evaluate(xt, condition=(yt + 1) % 3)["loss"]
    twos = m.sample(5, seed=1, condition=2)
    assert twos.shape == (5, 20) and not np.array_equal(twos, m.sample(5, seed=1, condition=0))
    mu, _ = m.encode(xt, condition=yt)
    assert np.array_equal(m.decode(mu[:4], condition=[2, 2, 2, 2]), m.decode(mu[:4], condition=2))
    assert np.isfinite(m.log_likelihood(xt, k=3, condition=yt)["iwae"])
    # What the command line's tools read: the saved model is a conditional one.
    m.save(tmp_path / "c.safetensors")
    again = vae.VAE.load(tmp_path / "c.safetensors")
    assert np.array_equal(again.sample(5, seed=1, condition=2), twos)

    # Bad conditions: a clear error naming what is wrong.
    with pytest.raises(ValueError, match="has no conditions but the model is conditioned on 3 classes"):
        m.evaluate(xt)
    with pytest.raises(ValueError, match="hold 96 rows but the data 'X' has 97 items"):
        m.evaluate(xt, condition=yt[:-1])
    with pytest.raises(ValueError, match="label 3 at item 0 is not one of the 3 classes"):
        m.sample(2, condition=3)
    with pytest.raises(ValueError, match="are 2 covariates per item but the model is conditioned on 3 classes"):
        m.evaluate(xt, condition=np.ones((97, 2), np.float32))
    with pytest.raises(TypeError, match="expected class labels"):
        m.evaluate(xt, condition=np.array(["a"] * 97))
    with pytest.raises(ValueError, match="condition and test_condition go together"):
        vae.VAE(**SMALL).fit(x, epochs=1, test=xt, condition=y)

    # Covariates (floats), and the PyTorch module takes them too.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    c, ct = rng.normal(size=(len(x), 2)), rng.normal(size=(len(xt), 2)).astype(np.float32)
    bad = ct.copy()
    bad[4, 1] = np.nan
    k = vae.VAE(**SMALL)
    k.fit(x, epochs=1, condition=c)
    assert k.config["model"]["condition_kind"] == "covariates" and k.config["model"]["condition_dim"] == 2
    with pytest.raises(ValueError, match="value nan at item 4, column 1 is not finite"):
        k.evaluate(xt, condition=bad)
    mu, logvar = k.encode(xt, condition=ct)
    t = k.to_torch()
    with torch.no_grad():
        tmu, tlogvar, _ = t(torch.from_numpy(xt), torch.from_numpy(ct))
        mean = t.decode_mean(tmu, torch.from_numpy(ct))
    np.testing.assert_allclose(tmu.numpy(), mu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mean.numpy(), k.decode(mu, condition=ct), rtol=0, atol=1e-6)


def test_the_model_is_used_by_one_call_at_a_time(data, tmp_path):
    """fit releases the GIL: another thread, or fit's progress callback (mid-epoch), is refused
    rather than let into the running session; the per-epoch callback may use the idle model
    (save it, evaluate) but not fit it again."""
    _, x, xt = data
    m = vae.VAE(**SMALL)
    seen = []

    def progress(*args):
        try:
            m.fit(x, epochs=1)
        except vae.Error as e:
            seen.append(str(e))
            raise

    with pytest.raises(vae.Error, match="VAE.fit\\(\\): the model is busy in fit\\(\\)"):
        m.fit(x, epochs=1, progress=progress)
    assert seen and m.epochs_done == 0
    with pytest.raises(vae.Error, match="VAE.encode\\(\\): the model is busy in fit\\(\\)"):
        m.fit(x, epochs=1, progress=lambda *a: m.encode(xt))

    def each_epoch(e):
        m.save(tmp_path / ("epoch%d.safetensors" % e["epoch"]))
        losses.append(m.evaluate(xt)["loss"])
        with pytest.raises(vae.Error, match="VAE.fit\\(\\): fit\\(\\) is running"):
            m.fit(x, epochs=1)

    losses = []
    history = m.fit(x, epochs=2, test=xt, callback=each_epoch)
    assert [h["test_loss"] for h in history] == pytest.approx(losses, rel=1e-6)
    assert (tmp_path / "epoch2.safetensors").exists()
    # Two threads: a call while the other trains is refused, not queued.
    errors, started = [], threading.Event()
    big = np.tile(x, (40, 1))

    def hold(*a):  # the session is busy while this runs: the first call waits for the other thread
        if not started.is_set():
            started.set()
            time.sleep(0.3)

    def train():
        m.fit(big, epochs=1, progress=hold)

    t = threading.Thread(target=train)
    t.start()
    started.wait(10)
    try:
        m.sample(2)
    except vae.Error as e:
        errors.append(str(e))
    t.join()
    assert errors and "busy in fit()" in errors[0]
    assert m.epochs_done == 3


def test_arguments_and_files_say_what_is_wrong(data, tmp_path):
    _, x, xt = data
    m = vae.VAE(**SMALL)
    m.fit(x, epochs=1)
    with pytest.raises(ValueError, match="decode_means: code 0 holds nan at dimension 1; codes must be finite"):
        m.decode(np.array([[0.0, np.nan, 0.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="seed: expected an integer in \\[0, 18446744073709551615\\], got -1"):
        m.sample(2, seed=-1)
    with pytest.raises(TypeError, match="seed: expected an integer, got 1.7"):
        m.sample(2, seed=1.7)
    with pytest.raises(TypeError, match="n: expected an integer, got True"):
        m.sample(True)
    with pytest.raises(ValueError, match="k: expected an integer in \\[1, 2147483647\\]"):
        m.log_likelihood(xt, k=2**31)
    # A checkpoint's header with a byte that is not UTF-8: vae.Error with the byte escaped.
    p = tmp_path / "m.safetensors"
    m.save(p)
    b = bytearray(p.read_bytes())
    b[8 + b[8:].index(b'"config"') + 1] = 0xC5
    p.write_bytes(bytes(b))
    with pytest.raises(vae.Error, match="\\\\xc5"):
        vae.VAE.load(p)
    # Stopped mid-epoch, then given data too small for that place in the epoch.
    def slow_stop(epoch, done, *a):  # slow, so that it is called at every step
        time.sleep(0.21)
        if done >= 7:
            signal.raise_signal(signal.SIGINT)

    stop = vae.VAE(**dict(SMALL, batch=4))
    with pytest.raises(KeyboardInterrupt):
        stop.fit(x, epochs=1, progress=slow_stop)
    with pytest.raises(vae.Error, match="stopped in the middle of an epoch, after batch \\d+, but this data has 5 batches"):
        stop.fit(x[:20], epochs=1)


def test_a_schedule_runs_over_the_epochs_option(data):
    _, x, _ = data
    m = vae.VAE(**dict(SMALL, lr_schedule="cosine", epochs=2))
    with pytest.warns(UserWarning, match="lr_schedule='cosine' runs over the epochs option \\(2\\); this fit goes to epoch 3"):
        m.fit(x, epochs=3)


def test_a_first_fit_with_conditions_makes_a_conditional_model_with_input_dim_given(data):
    _, x, _ = data
    labels = np.arange(len(x)) % 3
    m = vae.VAE(input_dim=20, **SMALL)
    m.fit(x, epochs=1, condition=labels)
    assert m.config["model"]["condition_kind"] == "classes" and m.config["model"]["condition_dim"] == 3
