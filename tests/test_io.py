"""fastbp.io: saved networks and estimators come back the same, a saved run resumes bit for
bit in a fresh process, and a file that is not a sound fastbp model gives one ValueError."""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastbp as fb
from fastbp.validation import ACTIVATIONS, LOSSES


def data(n=40, d=3, k=2, seed=0, labels=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if labels:
        return X, (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.int64) + (X[:, 1] > 1)
    return X, np.tanh(X @ rng.normal(size=(d, k)))


def round_trip(obj, **kwargs):
    buf = io.BytesIO()
    obj.save(buf, **kwargs)
    buf.seek(0)
    return fb.load_checkpoint(buf)


def header_of(raw):
    with np.load(io.BytesIO(raw)) as f:
        return json.loads(f["header"].tobytes())


def rewrite(raw, edit_header=None, edit_arrays=None, manifest=True):
    """The file ``raw`` with its arrays (a dict) edited, the header's list of arrays made to
    match them (unless ``manifest`` is False), then the header (a dict) edited."""
    with np.load(io.BytesIO(raw)) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays.pop("header").tobytes())
    if edit_arrays is not None:
        edit_arrays(arrays)
    if manifest:
        header["arrays"] = {
            k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()
        }
    if edit_header is not None:
        edit_header(header)
    text = json.dumps(header).encode()
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(text, np.uint8), **arrays)
    return buf.getvalue()


def load_bytes(raw):
    return fb.load(io.BytesIO(raw))


def assert_same_network(a, b):
    for name in ("layer_sizes", "activations", "output_activation", "loss", "init", "seed"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.dtype == b.dtype
    assert a.params.tobytes() == b.params.tobytes()


# ---- networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_network_round_trip_for_every_dtype_activation_and_loss(dtype, activation, loss):
    net = fb.MLP([3, 5, 4, 2], activation=activation, loss=loss, dtype=dtype, seed=1)
    net.biases[0][...] = np.arange(5)  # biases start at zero: make them count
    loaded = round_trip(net).model
    assert type(loaded) is fb.MLP
    assert_same_network(loaded, net)
    X = np.random.default_rng(0).normal(size=(7, 3))
    assert loaded.forward(X).tobytes() == net.forward(X).tobytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(init=("normal", 0.25), seed=None),
        dict(init=("uniform", 0.5), activation=["tanh", "relu"]),
        dict(init="orthogonal", output_activation="softmax", seed=2**64 - 1),
        dict(init="lecun_normal", output_activation="sigmoid"),
    ],
)
def test_network_round_trip_keeps_the_configuration(kwargs, tmp_path):
    net = fb.MLP([4, 6, 3, 2], **{"seed": 3, **kwargs})
    path = tmp_path / "net.model"
    net.save(path)
    assert os.listdir(tmp_path) == ["net.model"]  # as named: no .npz added, no temporary left
    loaded = fb.load(str(path))
    assert_same_network(loaded, net)
    assert loaded.init == net.init and type(loaded.init) is type(net.init)


def test_the_file_is_a_documented_npz_of_plain_arrays(tmp_path):
    net = fb.MLP([3, 4, 2], activation="tanh", seed=0)
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["biases_0", "biases_1", "header", "weights_0", "weights_1"]
        header = json.loads(f["header"].tobytes().decode("utf-8"))
        np.testing.assert_array_equal(f["weights_1"], net.weights[1])
    assert header["format"] == "fastbp.model" and header["format_version"] == 1
    assert header["fastbp_version"] == fb.__version__ and header["kind"] == "MLP"
    assert header["network"] == {
        "layer_sizes": [3, 4, 2],
        "activations": ["tanh"],
        "output_activation": "identity",
        "loss": "mse",
        "init": "auto",
        "dtype": "float32",
        "seed": 0,
    }
    assert header["arrays"]["weights_0"] == {"dtype": "<f4", "shape": [3, 4]}
    assert header["optimizer"] is None and header["history"] is False


def test_saving_over_a_file_replaces_it_whole(tmp_path):
    path = tmp_path / "m.npz"
    fb.MLP([3, 4, 2], seed=0).save(path)
    bigger = fb.MLP([3, 40, 2], seed=1)
    bigger.save(path)
    assert_same_network(fb.load(path), bigger)
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes and symbolic links")
def test_saving_keeps_the_file_mode_and_writes_through_a_link(tmp_path):
    path = tmp_path / "m.npz"
    mask = os.umask(0o027)
    try:
        fb.MLP([3, 4, 2], seed=0).save(path)  # a new file: 0o666 less the umask
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o640
    os.chmod(path, 0o604)
    fb.MLP([3, 4, 2], seed=1).save(path)  # replaced: its mode kept
    assert path.stat().st_mode & 0o777 == 0o604
    link = tmp_path / "latest.npz"
    link.symlink_to(path.name)
    net = fb.MLP([3, 5, 2], seed=2)
    net.save(link)
    assert link.is_symlink()  # still a link, to the file now saved
    assert_same_network(fb.load(path), net)
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "m.npz"]


def test_a_failed_save_leaves_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    net = fb.MLP([3, 4, 2], seed=0)
    net.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        fb.MLP([3, 9, 2], seed=1).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


# ---- optimizers, noise, history ------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda: fb.SGD(0.05),
    "sgd-momentum": lambda: fb.SGD(0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3),
    "sgd-nesterov": lambda: fb.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: fb.Adam(0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=1e-4),
    "adamw": lambda: fb.AdamW(0.01),
    "rmsprop": lambda: fb.RMSProp(0.01, alpha=0.9, momentum=0.5, centered=True),
    "adagrad": lambda: fb.AdaGrad(0.05, lr_decay=1e-3),
    "linesearch": lambda: fb.LineSearchSGD(1.0, c1=1e-3, shrink=0.7, max_iter=10),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_class_and_hyperparameters_round_trip(name):
    opt = OPTIMIZERS[name]()
    ck = round_trip(fb.MLP([3, 4, 2], seed=0), optimizer=opt)
    assert type(ck.optimizer) is type(opt)
    assert ck.optimizer.hyperparameters() == opt.hyperparameters()
    assert ck.grad_noise is None and ck.history is None


def test_optimizer_state_round_trips_and_a_damaged_one_is_named():
    X, Y = data()
    net = fb.MLP([3, 4, 2], seed=0)
    opt = fb.RMSProp(0.01, momentum=0.5, centered=True)
    fb.Trainer(net, opt, epochs=2, progress=False).fit(X, Y)
    buf = io.BytesIO()
    net.save(buf, optimizer=opt)
    raw = buf.getvalue()
    loaded = fb.load_checkpoint(io.BytesIO(raw)).optimizer
    mine, theirs = opt.state_dict(), loaded.state_dict()
    assert theirs["core"]["step"] == mine["core"]["step"] == opt.steps
    assert sorted(theirs["core"]["buffers"]) == sorted(mine["core"]["buffers"])
    for name, buffer in mine["core"]["buffers"].items():
        assert theirs["core"]["buffers"][name].tobytes() == buffer.tobytes()

    def shorten(arrays):
        name = next(k for k in arrays if k.startswith("optimizer.state."))
        arrays[name] = arrays[name][:-1]

    with pytest.raises(ValueError, match="optimizer RMSProp state"):
        load_bytes(rewrite(raw, edit_arrays=shorten))


def test_an_optimizer_state_of_another_network_is_refused_at_save_and_load():
    X, Y = data()
    net, other = fb.MLP([3, 4, 2], seed=0), fb.MLP([3, 9, 2], seed=0)
    opt = fb.Adam(0.01)
    fb.Trainer(other, opt, epochs=1, progress=False).fit(X, Y)
    with pytest.raises(ValueError, match="state is for 56 float32 parameters, the network has 26"):
        net.save(io.BytesIO(), optimizer=opt)
    buf = io.BytesIO()
    other.save(buf, optimizer=opt)

    def smaller_network(header):  # a header edited to another network, arrays to match
        header["network"]["layer_sizes"] = [3, 4, 2]

    def smaller_arrays(arrays):
        for layer, (w, b) in enumerate(zip(net.weights, net.biases)):
            arrays[f"weights_{layer}"], arrays[f"biases_{layer}"] = np.array(w), np.array(b)

    raw = rewrite(buf.getvalue(), edit_header=smaller_network, edit_arrays=smaller_arrays)
    with pytest.raises(ValueError, match="the optimizer: its state is for 56"):
        load_bytes(raw)


def test_noise_and_history_round_trip():
    X, Y = data()
    net = fb.MLP([3, 4, 2], seed=0)
    noise = fb.GradientNoise(0.02, gamma=0.3)  # seed None: the drawn seed is what is saved
    h = fb.Trainer(net, fb.SGD(0.1), epochs=3, grad_noise=noise, progress=False).fit(
        X, Y, validation=(X, Y)
    )
    ck = round_trip(net, history=h, grad_noise=noise)
    assert ck.history.to_json() == h.to_json()
    assert (ck.grad_noise.eta, ck.grad_noise.gamma, ck.grad_noise.t) == (0.02, 0.3, noise.t)
    assert ck.grad_noise.resolved_seed == noise.resolved_seed


RESUME_SCRIPT = """
import sys
import numpy as np
import fastbp as fb

path, out = sys.argv[1], sys.argv[2]
with np.load(path.replace(".npz", ".data.npz")) as d:
    X, y, Xv, yv = d["X"], d["y"], d["Xv"], d["yv"]
ck = fb.load_checkpoint(path)
trainer = fb.Trainer(ck.model, ck.optimizer, batch_size=8, epochs=4, seed=9,
                     grad_noise=ck.grad_noise, lr_schedule=fb.StepLR(3, 0.5), progress=False)
ck.history.extend(trainer.fit(X, y, validation=(Xv, yv), initial_epoch=len(ck.history)))
np.save(out, ck.model.params)
with open(out + ".json", "w") as f:
    f.write(ck.history.to_json())
"""


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_saved_run_resumes_bit_for_bit_in_a_fresh_process(name, tmp_path):
    """4 epochs, save, 4 more in another interpreter = 8 epochs in one go: weights bit for
    bit, history equal but for the epoch times."""
    X, y = data(n=48, labels=True)
    Xv, yv = data(n=16, seed=1, labels=True)
    np.savez(tmp_path / "run.data.npz", X=X, y=y, Xv=Xv, yv=yv)

    def start():
        net = fb.MLP([3, 8, 3], activation="tanh", loss="cross_entropy", seed=0)
        return net, OPTIMIZERS[name](), fb.GradientNoise(0.01, seed=4)

    def trainer(net, opt, noise, epochs):
        return fb.Trainer(
            net,
            opt,
            batch_size=8,
            epochs=epochs,
            seed=9,
            grad_noise=noise,
            lr_schedule=fb.StepLR(3, 0.5),
            progress=False,
        )

    net, opt, noise = start()
    whole = trainer(net, opt, noise, 8).fit(X, y, validation=(Xv, yv))
    half, opt, noise = start()
    first = trainer(half, opt, noise, 4).fit(X, y, validation=(Xv, yv))
    half.save(tmp_path / "run.npz", optimizer=opt, history=first, grad_noise=noise)
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    out = str(tmp_path / "resumed.npy")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run.npz"), out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert np.load(out).tobytes() == net.params.tobytes()
    resumed = json.loads((tmp_path / "resumed.npy.json").read_text())
    single = json.loads(whole.to_json())
    resumed.pop("epoch_time"), single.pop("epoch_time")
    assert resumed == single


# ---- estimators ----------------------------------------------------------------------------

try:
    import sklearn
except ImportError:
    sklearn = None
needs_sklearn = pytest.mark.skipif(sklearn is None, reason="scikit-learn is not installed")


def fitted_classifier(y_kind, **kw):
    X, y = fb.datasets.blobs(150, n_classes=3, seed=2)
    labels = {
        "str": np.array(["setosa", "versicolor", "virginica"])[y],
        "object": np.array(["a", "bb", "ccc"], dtype=object)[y],
        "int": np.array([-5, 7, 1000])[y],
        "bool": y == 1,
    }[y_kind]
    params = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0, **kw)
    return fb.MLPClassifier(**params).fit(X, labels), X, labels


def assert_same_estimator(a, b, X):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    assert_same_network(a.net_, b.net_)
    for name in ("n_features_in_", "n_iter_", "t_", "loss_", "best_loss_", "n_layers_"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.loss_curve_ == b.loss_curve_ and a.validation_scores_ == b.validation_scores_
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.predict(X).dtype == b.predict(X).dtype


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
@pytest.mark.parametrize("y_kind", ["str", "object", "int", "bool"])
def test_classifier_round_trip_with_labels_of_every_kind(y_kind):
    est, X, labels = fitted_classifier(y_kind)
    loaded = round_trip(est).model
    assert_same_estimator(loaded, est, X)
    assert loaded.classes_.dtype == est.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    assert loaded.predict_proba(X).tobytes() == est.predict_proba(X).tobytes()
    assert loaded.score(X, labels) == est.score(X, labels)


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_loaded_classifier_partial_fits_as_the_original(solver):
    kw = dict(solver=solver, momentum=0.0) if solver == "sgd" else dict(solver=solver)
    est, X, labels = fitted_classifier("str", grad_noise=0.01, **kw)
    loaded = round_trip(est).model
    for _ in range(2):
        est.partial_fit(X, labels)
        loaded.partial_fit(X, labels)
    assert_same_estimator(loaded, est, X)
    assert len(loaded.history_) == len(est.history_) == 6


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
def test_without_state_the_estimator_predicts_the_same_and_trains_on():
    est, X, labels = fitted_classifier("str")
    buf = io.BytesIO()
    est.save(buf, include_state=False)
    full = io.BytesIO()
    est.save(full)
    assert len(buf.getvalue()) < len(full.getvalue())
    loaded = fb.load(io.BytesIO(buf.getvalue()))
    assert_same_estimator(loaded, est, X)
    assert len(loaded.history_) == 0
    loaded.partial_fit(X, labels)
    assert len(loaded.loss_curve_) == 5 and len(loaded.history_) == 1


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
@pytest.mark.parametrize("two_d", [False, True])
def test_regressor_round_trip(two_d, tmp_path):
    X, Y = data(n=60, k=2)
    y = Y if two_d else Y[:, 0]
    est = fb.MLPRegressor(
        (6,),
        max_iter=5,
        random_state=np.random.RandomState(3),
        early_stopping=True,
        n_iter_no_change=np.inf,
        dtype="float64",
        grad_noise=fb.GradientNoise(0.01, seed=1),
    ).fit(X, y)
    est.save(tmp_path / "reg.npz")
    loaded = fb.load(tmp_path / "reg.npz")
    assert loaded.predict(X).shape == y.shape
    assert loaded.best_validation_score_ == est.best_validation_score_
    assert loaded.n_iter_no_change == np.inf
    params = loaded.get_params()
    assert params["random_state"].get_state()[1].tolist() == (
        est.random_state.get_state()[1].tolist()
    )
    assert params["grad_noise"].resolved_seed == 1
    est.set_params(random_state=3, grad_noise=0.01)  # objects compare by identity
    loaded.set_params(random_state=3, grad_noise=0.01)
    assert_same_estimator(loaded, est, X)


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
def test_feature_names_of_a_dataframe_are_kept():
    pd = pytest.importorskip("pandas")
    X, y = fb.datasets.blobs(100, n_classes=2, seed=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = fb.MLPClassifier((4,), max_iter=3, random_state=0).fit(frame, pd.Series(y).astype(str))
    loaded = round_trip(est).model
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.predict(frame), est.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame.rename(columns={"f0": "other"}))


def test_saving_refuses_what_it_could_not_load():
    class MyMLP(fb.MLP):
        pass

    with pytest.raises(TypeError, match="subclass"):
        MyMLP([3, 2]).save(io.BytesIO())
    with pytest.raises(TypeError, match="optimizer"):
        fb.MLP([3, 2]).save(io.BytesIO(), optimizer="adam")
    with pytest.raises(ValueError, match="layer_activations"):
        fb.MLP([3, 2]).save(io.BytesIO(), history=fb.History(["relu", "identity"]))


@needs_sklearn
def test_an_unfitted_estimator_is_not_saved():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        fb.MLPClassifier().save(io.BytesIO())


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
def test_a_parameter_that_cannot_be_saved_is_named_and_nothing_is_written(tmp_path):
    est, _, _ = fitted_classifier("int")
    est.set_params(activation=object())  # never validated after the fit
    with pytest.raises(TypeError, match="params.activation"):
        est.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# ---- bad files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good():
    X, Y = data()
    net = fb.MLP([3, 4, 2], activation="tanh", seed=0)
    opt = fb.SGD(0.1)
    h = fb.Trainer(net, opt, epochs=2, progress=False).fit(X, Y)
    buf = io.BytesIO()
    net.save(buf, optimizer=opt, history=h)
    return net, buf.getvalue()


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fb.load(tmp_path / "nothing.npz")


def test_every_truncation_is_refused(good):
    _, raw = good
    for length in range(len(raw)):
        with pytest.raises(ValueError, match="fastbp model|damaged|truncated"):
            load_bytes(raw[:length])


def test_every_flipped_byte_is_refused_or_harmless(good):
    """The CRC-32 of every array and the header's checks catch a flipped byte, unless it fell
    where nothing is read (a zip timestamp): then the model is the same."""
    net, raw = good
    refused = 0
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 0xFF
        try:
            loaded = load_bytes(bytes(damaged))
        except ValueError:
            refused += 1
            continue
        assert_same_network(loaded, net)
    assert refused > 0.7 * len(raw)


def test_corrupt_parameters_name_the_damaged_array(good):
    net, raw = good
    start = raw.index(net.weights[1].tobytes())
    damaged = bytearray(raw)
    damaged[start + 3] ^= 0x10
    with pytest.raises(ValueError, match=r"damaged.*'weights_1'.*CRC"):
        load_bytes(bytes(damaged))


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def zip_bytes(name, payload):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, payload)
    return buf.getvalue()


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "not an .npz"),
        (os.urandom(300), "not an .npz"),
        (b"\x80\x04\x95" + os.urandom(50), "not an .npz"),  # a pickle
        (npy_bytes(np.arange(4)), "a single .npy array"),
        (npz_bytes(X=np.ones(3)), "no 'header'"),
        (zip_bytes("readme.txt", "hello"), "no 'header'"),
        (npz_bytes(header=np.arange(3)), "must be UTF-8 text"),
        (npz_bytes(header=np.frombuffer(b"\xff\xfe", np.uint8)), "not UTF-8"),
        (npz_bytes(header=np.frombuffer(b"{oops", np.uint8)), "not JSON"),
        (npz_bytes(header=np.frombuffer(b"[1, 2]", np.uint8)), "header format None"),
        (
            npz_bytes(header=np.array([{"format": "fastbp.model"}], dtype=object)),
            "pickled Python objects",
        ),
    ],
)
def test_foreign_files_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        load_bytes(raw)


def test_a_pickled_object_array_is_never_loaded(good, monkeypatch):
    import pickle

    ran = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: ran.append(1))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: ran.append(1))
    _, raw = good
    evil = rewrite(raw, edit_arrays=lambda a: a.update(evil=np.array([print], dtype=object)))
    with pytest.raises(ValueError, match="'evil' holds pickled Python objects"):
        load_bytes(evil)
    assert not ran


def set_in(path, value):
    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return edit


DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["format"], "numpy.thing", "header format 'numpy.thing'"),
        (["format"], DELETE, "header format None"),
        (["format_version"], 2, "newer fastbp.*version 2.*upgrade"),
        (["format_version"], "1", "format_version must be"),
        (["kind"], "Pipeline", "kind must be one of"),
        (["network"], DELETE, "'network' is missing"),
        (["network", "layer_sizes"], [3, 5, 2], r"'weights_0' is float32 \(3, 4\)"),
        # sizes no array holds are refused before the network is built (2**31 - 2**16 wide
        # hidden layers would need 8 GB of random weights first)
        (["network", "layer_sizes"], [3, 2**31 - 2**16, 2], r"'weights_0' is float32 \(3, 4\)"),
        (["network", "loss"], "hinge", "network it describes is invalid: loss must be one of"),
        (["network", "dtype"], "float64", "'weights_0' is float32"),
        (["network", "activations"], ["tanh", "relu"], "invalid: activation lists"),
        (["network", "init"], {"$eval": "1"}, "malformed tagged value"),
        (["network", "extra_field"], 1, "network must have the fields"),
        (["optimizer", "class"], "os.system", "class must be one of"),
        (["optimizer", "hyperparameters", "lr"], -1.0, "optimizer SGD: lr must be >= 0"),
        (
            ["optimizer", "hyperparameters", "gamma"],
            1.0,
            r"\['gamma'\] are not hyperparameters of SGD",
        ),
        (["history"], "yes", "'history' has the wrong type"),
        (["arrays", "weights_0", "shape"], [4, 3], "'weights_0' is .* the header says"),
        (
            ["arrays", "weights_9"],
            {"dtype": "<f4", "shape": [1]},
            r"missing from the file: \['weights_9'\]",
        ),
        (["arrays", "history"], DELETE, r"does not list: \['history'\]"),
    ],
)
def test_a_malformed_header_is_named(good, path, value, message):
    _, raw = good
    with pytest.raises(ValueError, match=message):
        load_bytes(rewrite(raw, edit_header=set_in(path, value)))


def test_missing_or_misshapen_arrays_are_named(good):
    _, raw = good

    def drop_weights(arrays):
        del arrays["weights_1"]

    def misshape(arrays):
        arrays["biases_0"] = np.zeros(5, np.float32)

    with pytest.raises(ValueError, match=r"missing from the file: \['weights_1'\]"):
        load_bytes(rewrite(raw, edit_arrays=drop_weights, manifest=False))
    with pytest.raises(ValueError, match="'weights_1' is missing"):
        load_bytes(rewrite(raw, edit_arrays=drop_weights))
    with pytest.raises(ValueError, match="'biases_0' is float32 \\(5,\\); the network needs"):
        load_bytes(rewrite(raw, edit_arrays=misshape))
    with pytest.raises(ValueError, match="source is not valid JSON"):
        load_bytes(rewrite(raw, edit_arrays=lambda a: a.update(history=a["history"][:-5])))
    with pytest.raises(ValueError, match="array 'history' is missing"):
        load_bytes(rewrite(raw, edit_arrays=lambda a: a.pop("history")))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_are_refused(good, value):
    _, raw = good

    def poison(arrays):
        arrays["weights_1"] = arrays["weights_1"].copy()
        arrays["weights_1"][2, 1] = value

    with pytest.raises(ValueError, match="'weights_1' holds NaN or infinite values"):
        load_bytes(rewrite(raw, edit_arrays=poison))


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
@pytest.mark.parametrize(
    "path, value, message",
    [
        (["estimator", "params", "solver"], "lbfgs", "solver must be one of"),
        (["estimator", "params", "max_iterations"], 3, "are not parameters of MLP"),
        (["estimator", "fitted", "n_features_in_"], 7, "n_features_in_ is 7, the network has"),
        (["estimator", "fitted", "loss_curve_"], "low", "loss_curve_ must be a list"),
        (["estimator", "fitted", "t_"], DELETE, "t_ is missing"),
        (["estimator", "fitted", "rng", "bit_generator"], "MT19937", "rng is not a PCG64"),
        (["estimator", "fitted", "multilabel"], True, "3 classes need 3 outputs"),
        (["estimator", "fitted", "y_dtype"], "no-such-dtype", "y_dtype must name a dtype"),
        (["optimizer"], None, "must hold its optimizer"),
        # values the next partial_fit would fail on, or parameters of another network
        (["estimator", "fitted", "shuffle_seed"], 2**64, "shuffle_seed must be an int in"),
        (["estimator", "fitted", "run_epochs"], 2**63, "run_epochs must be an int in"),
        (["estimator", "params", "hidden_layer_sizes"], [4], "do not describe the saved"),
        (["estimator", "params", "activation"], "tanh", "do not describe the saved"),
        (["estimator", "params", "dtype"], "float64", "do not describe the saved"),
    ],
)
def test_a_malformed_estimator_record_is_named(path, value, message):
    est, _, _ = fitted_classifier("str")
    buf = io.BytesIO()
    est.save(buf)
    with pytest.raises(ValueError, match=message):
        load_bytes(rewrite(buf.getvalue(), edit_header=set_in(path, value)))


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
def test_a_file_from_before_a_parameter_was_added_loads_with_its_default():
    # matmul_precision and SGD's nesterov came after files of format version 1 were written
    est, X, _ = fitted_classifier("str", solver="sgd", momentum=0.5)
    buf = io.BytesIO()
    est.save(buf)

    def older(header):
        del header["estimator"]["params"]["matmul_precision"]
        del header["optimizer"]["hyperparameters"]["nesterov"]

    loaded = load_bytes(rewrite(buf.getvalue(), edit_header=older))
    assert loaded.matmul_precision == "highest" and loaded._optimizer_.nesterov is False
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


@needs_sklearn
@pytest.mark.filterwarnings("ignore:.*maximum iterations")
def test_inconsistent_classes_are_refused():
    est, _, _ = fitted_classifier("str")
    buf = io.BytesIO()
    est.save(buf)

    def two_classes(arrays):
        arrays["fitted.classes_"] = arrays["fitted.classes_"][:2]

    with pytest.raises(ValueError, match="2 classes need 1 outputs"):
        load_bytes(rewrite(buf.getvalue(), edit_arrays=two_classes))

    def reordered(arrays):  # predict would name every class wrongly
        arrays["fitted.classes_"] = arrays["fitted.classes_"][[2, 0, 1]]

    def repeated(arrays):
        arrays["fitted.classes_"] = arrays["fitted.classes_"][[0, 0, 1]]

    for edit in (reordered, repeated):
        with pytest.raises(ValueError, match="classes_ must be sorted and distinct"):
            load_bytes(rewrite(buf.getvalue(), edit_arrays=edit))


def test_the_error_names_the_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
        fb.load(path)


# ---- hostile files: the review's findings -------------------------------------------------


def _zip_with(raw, name, data, compress=zipfile.ZIP_STORED):
    """``raw``'s archive with member ``name`` replaced by (or added as) ``data``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info, src.read(info.filename))
        dst.writestr(name, data, compress_type=compress)
    return out.getvalue()


def _saved_net():
    buf = io.BytesIO()
    fb.MLP([3, 4, 2], seed=0).save(buf)
    return buf.getvalue()


def test_a_member_that_is_not_an_npy_array_is_named():
    raw = _zip_with(_saved_net(), "weights_0.npy", b"hello")
    with pytest.raises(ValueError, match="member 'weights_0' is not a .npy array"):
        load_bytes(raw)


def test_a_compressed_member_is_refused_before_it_is_inflated():
    """np.savez never compresses: a deflated member (a zip bomb) is refused unread."""
    raw = _zip_with(_saved_net(), "junk.npy", b"\0" * (1 << 20), zipfile.ZIP_DEFLATED)
    assert len(raw) < 10_000  # 1 MiB of zeros in a few kilobytes
    with pytest.raises(ValueError, match=r"compressed members \['junk.npy'\]"):
        load_bytes(raw)


def test_a_header_nested_too_deeply_is_a_value_error():
    raw = rewrite(_saved_net(), edit_header=lambda h: h.update(data=[[[[0]]]]))
    deep = json.dumps(header_of(raw)).replace("[[[[0]]]]", "[" * 100_000 + "]" * 100_000)
    with np.load(io.BytesIO(raw)) as f:
        arrays = {k: f[k] for k in f.files if k != "header"}
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(deep.encode(), np.uint8), **arrays)
    with pytest.raises(ValueError, match="nested too deeply|not JSON"):
        load_bytes(buf.getvalue())


@needs_sklearn
@pytest.mark.parametrize("pos", [625, 10**8, -1])
def test_a_saved_random_state_out_of_range_is_refused(pos):
    """numpy's set_state reads keys[pos] unchecked: a segfault at the next fit."""
    X, y = data(labels=True)
    est = fb.MLPClassifier((4,), max_iter=2, random_state=np.random.RandomState(1))
    with pytest.warns(Warning):
        est.fit(X, y)
    buf = io.BytesIO()
    est.save(buf)

    def edit(header):
        header["estimator"]["params"]["random_state"]["$RandomState"]["pos"] = pos

    with pytest.raises(ValueError, match="RandomState is malformed: keys must be 624"):
        load_bytes(rewrite(buf.getvalue(), edit_header=edit))


@needs_sklearn
def test_adaptive_rates_state_is_saved_for_partial_fit():
    X, y = data(labels=True)
    kw = dict(
        hidden_layer_sizes=(5,),
        solver="sgd",
        learning_rate="adaptive",
        tol=10.0,
        n_iter_no_change=2,
        random_state=0,
        learning_rate_init=0.1,
    )
    est = fb.MLPClassifier(**kw)
    for _ in range(2):
        est.partial_fit(X, y, classes=np.unique(y))
    loaded = round_trip(est).model
    for _ in range(3):
        est.partial_fit(X, y)
        loaded.partial_fit(X, y)
    assert loaded.history_.lr == est.history_.lr and est.history_.lr[-1] < 0.1  # lowered
    assert_same_estimator(loaded, est, X)
