"""Optimizers: PyTorch's update formulas, state round trips, bad input."""

import json

import numpy as np
import pytest

from eventsim.errors import OptionError
from eventsim.learning.optimizers import SGD, Adam, AdamW, optimizer_from_config

CONFIGS = [
    SGD(0.1),
    SGD(0.1, weight_decay=0.01),
    SGD(0.05, momentum=0.9),
    SGD(0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    SGD(0.05, momentum=0.8, nesterov=True),
    SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
    Adam(1e-2),
    Adam(1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    Adam(1e-2, betas=(0.3, 0.5)),  # 1 - beta1 > 0.5: the other branch of torch's lerp
    AdamW(1e-2),
    AdamW(1e-2, betas=(0.85, 0.95), weight_decay=0.1),
]
IDS = [repr(o) for o in CONFIGS]


def _fresh(opt):
    return optimizer_from_config(opt.config())


def _params(rng, dtype=np.float64):
    return {
        "conv1.weight": rng.standard_normal((4, 2, 3, 3)).astype(dtype),
        "conv1.bias": rng.standard_normal(4).astype(dtype),
        "res1.conv2.weight": rng.standard_normal((3, 5)).astype(dtype),
    }


def _grads(rng, params):
    return [{k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()} for _ in range(10)]


def _torch_run(torch, opt, params, grads, lrs):
    cfg = opt.config()
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.pop("name")]
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = cls(list(tensors.values()), foreach=False, **cfg)
    for g, lr in zip(grads, lrs):
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        for group in topt.param_groups:
            group["lr"] = lr
        topt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


@pytest.mark.parametrize("opt", CONFIGS, ids=IDS)
def test_matches_torch_float64(opt):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = _params(rng)
    grads = _grads(rng, params)
    lrs = [opt.lr * f for f in (1.0, 0.5, 2.0, 1.0, 0.1, 1.0, 0.7, 1.3, 1.0, 0.2)]  # as a schedule drives it
    expected = _torch_run(torch, opt, params, grads, lrs)
    opt = _fresh(opt)
    for g, lr in zip(grads, lrs):
        opt.step(params, g, lr=lr)
    for k in params:
        assert params[k].dtype == np.float64
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=0, err_msg=k)


@pytest.mark.parametrize("opt", CONFIGS, ids=IDS)
def test_float32_stays_float32(opt):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    params = _params(rng, np.float32)
    grads = _grads(rng, params)
    expected = _torch_run(torch, opt, params, grads, [opt.lr] * len(grads))
    opt = _fresh(opt)
    for g in grads:
        opt.step(params, g)
    for k in params:
        assert params[k].dtype == np.float32
        assert all(a.dtype == np.float32 for n, a in opt.state_dict().items() if n != "step")
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_updates_in_place_and_leaves_gradients_alone():
    rng = np.random.default_rng(3)
    params = _params(rng)
    arrays = dict(params)
    grads = _grads(rng, params)[0]
    before = {k: g.copy() for k, g in grads.items()}
    SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.1).step(params, grads)
    assert all(params[k] is arrays[k] for k in params)
    assert all(np.array_equal(grads[k], before[k]) for k in grads)


@pytest.mark.parametrize("opt", CONFIGS, ids=IDS)
@pytest.mark.parametrize("stop", [0, 1, 4])
def test_state_dict_resumes_bit_for_bit(opt, stop):
    rng = np.random.default_rng(4)
    start = _params(rng)
    grads = _grads(rng, start)

    straight = {k: v.copy() for k, v in start.items()}
    a = _fresh(opt)
    for g in grads:
        a.step(straight, g)

    resumed = {k: v.copy() for k, v in start.items()}
    b = _fresh(opt)
    for g in grads[:stop]:
        b.step(resumed, g)
    state = b.state_dict()
    assert state["step"].shape == () and state["step"].dtype == np.int64 and int(state["step"]) == stop
    at_stop = {k: v.copy() for k, v in resumed.items()}
    b.step(resumed, grads[stop])  # the dict is a copy: later steps leave it as it was
    c = _fresh(opt)
    c.load_state_dict(state)
    for g in grads[stop:]:
        c.step(at_stop, g)
    assert c.steps == len(grads)
    for k in straight:
        assert np.array_equal(at_stop[k], straight[k]), k


def test_state_dict_names():
    rng = np.random.default_rng(5)
    params = _params(rng)
    g = _grads(rng, params)[0]
    assert set(SGD(0.1).state_dict()) == {"step"}
    sgd, adam = SGD(0.1, momentum=0.5), Adam()
    sgd.step(params, g)
    adam.step(params, g)
    assert set(sgd.state_dict()) == {"step"} | {f"momentum/{k}" for k in params}
    assert set(adam.state_dict()) == {"step"} | {f"{b}/{k}" for k in params for b in ("exp_avg", "exp_avg_sq")}


@pytest.mark.parametrize("opt", CONFIGS, ids=IDS)
def test_config_round_trip(opt):
    cfg = json.loads(json.dumps(opt.config()))
    again = optimizer_from_config(cfg)
    assert type(again) is type(opt) and again.config() == opt.config()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD(0.0), "lr must be a finite number > 0, got 0.0"),
        (lambda: SGD(-0.1), "lr"),
        (lambda: SGD(float("nan")), "lr"),
        (lambda: SGD(float("inf")), "lr"),
        (lambda: SGD("0.1"), "lr"),
        (lambda: SGD(0.1, momentum=1.0), "momentum"),
        (lambda: SGD(0.1, momentum=-0.5), "momentum"),
        (lambda: SGD(0.1, dampening=1.5), "dampening"),
        (lambda: SGD(0.1, weight_decay=-1e-4), "weight_decay"),
        (lambda: SGD(0.1, nesterov=True), "nesterov needs momentum > 0"),
        (lambda: SGD(0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening = 0"),
        (lambda: SGD(0.1, momentum=0.9, nesterov=1), "nesterov must be True or False"),
        (lambda: Adam(betas=(1.0, 0.999)), "beta1"),
        (lambda: Adam(betas=(0.9, -0.1)), "beta2"),
        (lambda: Adam(betas=(0.9,)), "betas must be a pair"),
        (lambda: Adam(eps=0.0), "eps"),
        (lambda: AdamW(weight_decay=float("nan")), "weight_decay"),
        (lambda: optimizer_from_config({"name": "rmsprop"}), "unknown optimizer 'rmsprop'"),
        (lambda: optimizer_from_config({"name": "adam", "momentum": 0.9}), "optimizer 'adam'.*momentum"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(OptionError, match=match):
        make()


def _bad_grads(params):
    good = {k: np.ones_like(v) for k, v in params.items()}
    missing = dict(good)
    del missing["conv1.bias"]
    nan = {k: v.copy() for k, v in good.items()}
    nan["res1.conv2.weight"][1, 2] = np.nan
    return [
        (missing, r"missing \['conv1.bias'\]"),
        ({**good, "fc9.weight": np.ones(3)}, r"unexpected \['fc9.weight'\]"),
        ({**good, "conv1.bias": np.ones(5)}, r"gradient of 'conv1.bias' must be float64 \(4,\)"),
        ({**good, "conv1.bias": np.ones(4, np.float32)}, "gradient of 'conv1.bias' must be float64.*got float32"),
        ({**good, "conv1.bias": [1.0] * 4}, "gradient of 'conv1.bias'.*got list"),
        (nan, r"gradient of 'res1.conv2.weight' is not finite at index \(1, 2\)"),
    ]


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("opt", [SGD(0.1, momentum=0.9), Adam()], ids=["sgd", "adam"])
def test_bad_gradients_name_the_parameter_and_change_nothing(opt, case):
    rng = np.random.default_rng(6)
    params = _params(rng)
    opt = _fresh(opt)
    opt.step(params, _grads(rng, params)[0])
    before = {k: v.copy() for k, v in params.items()}
    state = opt.state_dict()
    grads, match = _bad_grads(params)[case]
    with pytest.raises(OptionError, match=match):
        opt.step(params, grads)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    after = opt.state_dict()
    assert after.keys() == state.keys() and all(np.array_equal(after[k], state[k]) for k in state)


def test_bad_step_lr_and_params():
    rng = np.random.default_rng(7)
    params = _params(rng)
    g = _grads(rng, params)[0]
    with pytest.raises(OptionError, match="lr"):
        SGD(0.1).step(params, g, lr=-1.0)
    ints = {"w": np.ones(3, np.int64)}
    with pytest.raises(OptionError, match="parameter 'w' must be a float32 or float64"):
        SGD(0.1).step(ints, {"w": np.ones(3, np.int64)})
    frozen = {"w": np.ones(3)}
    frozen["w"].flags.writeable = False
    with pytest.raises(OptionError, match="parameter 'w' is read-only"):
        SGD(0.1).step(frozen, {"w": np.ones(3)})


def test_parameters_that_do_not_fit_the_state():
    rng = np.random.default_rng(8)
    params = _params(rng)
    opt = Adam()
    opt.step(params, _grads(rng, params)[0])
    other = {**params, "fc1.weight": np.ones((2, 2))}
    with pytest.raises(OptionError, match=r"no state for \['fc1.weight'\]"):
        opt.step(other, {k: np.ones_like(v) for k, v in other.items()})
    reshaped = {**params, "conv1.bias": np.ones(6)}
    with pytest.raises(OptionError, match=r"'conv1.bias' is float64 \(6,\) but its 'exp_avg' state is float64 \(4,\)"):
        opt.step(reshaped, {k: np.ones_like(v) for k, v in reshaped.items()})
    single = {k: v.astype(np.float32) for k, v in params.items()}
    with pytest.raises(OptionError, match="parameter 'conv1.weight' is float32.*state is float64"):
        opt.step(single, {k: np.ones_like(v) for k, v in single.items()})


def _adam_state():
    rng = np.random.default_rng(9)
    params = _params(rng)
    opt = Adam()
    opt.step(params, _grads(rng, params)[0])
    return opt.state_dict()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.pop("step"), "no 'step' counter"),
        (lambda s: s.update(step=np.array([3])), "'step' must be a 0-d integer"),
        (lambda s: s.update(step=np.array(-1)), "'step' must be a 0-d integer >= 0"),
        (lambda s: s.update(step=np.array(0)), "step 0 but holds buffers"),
        (lambda s: s.update({"momentum/conv1.bias": np.ones(4)}), "unknown state entry 'momentum/conv1.bias'"),
        (lambda s: s.update({"exp_avg": np.ones(4)}), "unknown state entry 'exp_avg'"),
        (lambda s: s.pop("exp_avg_sq/conv1.bias"), r"'exp_avg_sq' is missing for parameters \['conv1.bias'\]"),
        (lambda s: s.update({"exp_avg/conv1.bias": np.ones(5)}), "buffers of parameter 'conv1.bias' differ"),
        (lambda s: s.update({"exp_avg/conv1.bias": np.ones(4, np.int32)}), "must be a float32 or float64 array"),
        (lambda s: [s.pop(k) for k in list(s) if k != "step"], "step 1 but no 'exp_avg' buffers"),
    ],
)
def test_bad_state_dicts(edit, match):
    state = _adam_state()
    edit(state)
    opt = Adam()
    with pytest.raises(OptionError, match=match):
        opt.load_state_dict(state)
    assert opt.steps == 0 and opt.state_dict().keys() == {"step"}
