"""Regenerate tests/reference/torch_reference.npz and torch_reference.json: three training runs in PyTorch.

Not run by CI (CI has no torch); tests/unit/test_independent_reference.py checks LNN against the committed
fixture. Run from the repository root, with torch==2.13.0 (CPU) installed in the venv:

    .venv/bin/python tests/reference/make_torch_fixture.py

Only two conventions are taken from LNN, so that both sides start identical: the initial parameters
(lnn_core.ml.network.init_params) and the example order of each epoch (lnn_core.ml.training.minibatches).
All the arithmetic (forward pass, cost, gradients, optimizer update) is PyTorch float64, written from
LNN's documented DEFINITIONS (training.py's and optimizers.py's docstrings), not from its code:

  * examples are rows here (torch.nn.functional.linear: X @ W.T + b), LNN uses columns;
  * classification costs come from the logits (binary_cross_entropy_with_logits, cross_entropy with class
    indices), LNN's from clipped probabilities; regression is mse_loss(reduction="sum") / 2;
  * gradients are torch.autograd's of each batch's cost (loss_sum_b + (l2 / 2) sum_l ||W_l||_F^2) / m_b
    (biases not regularized), where LNN writes the backward pass by hand;
  * adam is torch.optim.Adam (weight_decay=0: L2 is in the cost), whose update is LNN's definition
    (epsilon added to sqrt of the bias-corrected second moment, bias corrections with t counted from 1
    over the whole run); gd is torch.optim.SGD; momentum is written in torch ops, since torch.optim.SGD's
    momentum (with dampening = 1 - beta) starts its buffer at the first gradient itself, not (1 - beta) * g
    as LNN's definition does, so it is a different method on the first step;
  * an epoch's cost is sum_b (loss_sum_b + (l2 / 2) sum_l ||W_l||^2, W before the batch's update) / m.
"""

import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lambda_src"))

from lnn_core.ml.batching import minibatches  # noqa: E402  (... and the example order per epoch)
from lnn_core.ml.network import init_params  # noqa: E402  (conventions only: initial parameters ...)

OUT = Path(__file__).resolve().parent
CLIP = 1e-15  # LNN clips probabilities to [CLIP, 1 - CLIP]; the runs must never reach it (checked below)

# One dict per run: the options of lnn_core.ml.training.train_reference_state, plus how to make the data.
RUNS = {
    "binary_adam_l2": {
        "data": {"kind": "binary", "m": 50, "n0": 4, "seed": 101},
        "options": {
            "neurons": [5, 3, 1],
            "activations": ["relu", "tanh", "sigmoid"],
            "learning_rate": 0.01,
            "epochs": 6,
            "init": "he",
            "seed": 3,
            "batch_size": 16,
            "shuffle_seed": 11,
            "optimizer": "adam",
            "beta1": 0.9,
            "beta2": 0.999,
            "epsilon": 1e-8,
            "l2": 0.1,
        },
    },
    "softmax_momentum_l2": {
        "data": {"kind": "softmax", "m": 60, "n0": 3, "classes": 3, "seed": 202},
        "options": {
            "neurons": [6, 3],
            "activations": ["tanh", "softmax"],
            "learning_rate": 0.1,
            "epochs": 5,
            "init": "lecun",
            "seed": 5,
            "batch_size": 25,
            "shuffle_seed": 2,
            "optimizer": "momentum",
            "beta": 0.8,
            "l2": 0.03,
        },
    },
    "regression_gd": {
        "data": {"kind": "regression", "m": 40, "n0": 3, "outputs": 2, "seed": 303},
        "options": {
            "neurons": [4, 2],
            "activations": ["sigmoid", "linear"],
            "learning_rate": 0.05,
            "epochs": 8,
            "init": "lecun",
            "seed": 7,
            "batch_size": 16,
            "shuffle_seed": 9,
            "optimizer": "gd",
            "l2": 0.0,
        },
    },
}


def make_data(spec):
    """Small synthetic data, rows: X (m, n0) and y (m,) labels or (m, k) targets, from numpy's RandomState(seed)."""
    rng = np.random.RandomState(spec["seed"])
    m, n0 = spec["m"], spec["n0"]
    X = rng.randn(m, n0)
    if spec["kind"] == "binary":
        w = rng.randn(n0)
        y = ((X @ w + 0.5 * rng.randn(m)) > 0).astype(np.float64)
    elif spec["kind"] == "softmax":
        W = rng.randn(n0, spec["classes"])
        y = np.argmax(X @ W + 0.3 * rng.randn(m, spec["classes"]), axis=1).astype(np.int64)
    else:
        W = rng.randn(n0, spec["outputs"])
        y = np.tanh(X @ W) + 0.1 * rng.randn(m, spec["outputs"])
    return X, y


HIDDEN = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda z: z}


def batch_loss_sum(logits, y, output):
    """The sum over the batch's examples of each one's loss, from the output layer's pre-activation (rows)."""
    if output == "sigmoid":
        # the largest probability error clipping could hide: check the run never gets near the clip
        p = torch.sigmoid(logits.detach())
        assert CLIP < p.min() and p.max() < 1 - CLIP
        return F.binary_cross_entropy_with_logits(logits[:, 0], y, reduction="sum")
    if output == "softmax":
        p = torch.softmax(logits.detach(), dim=1)
        assert CLIP < p.min() and p.max() < 1 - CLIP
        return F.cross_entropy(logits, y, reduction="sum")
    return F.mse_loss(logits, y, reduction="sum") / 2


def run(X_np, y_np, options):
    """One training run in torch -> (initial params, orders per epoch, final params, costs, optimizer state)."""
    neurons, activations = options["neurons"], options["activations"]
    m, n0 = X_np.shape
    layers = len(neurons)
    init = init_params([n0, *neurons], options["init"], options["seed"])  # convention taken from LNN
    orders = []
    for epoch in range(1, options["epochs"] + 1):
        batches = minibatches(m, options["batch_size"], options["shuffle_seed"], epoch)  # convention from LNN
        orders.append(np.concatenate([np.arange(m)[b] for b in batches]))

    X = torch.tensor(X_np, dtype=torch.float64)
    y = torch.tensor(y_np, dtype=torch.int64 if activations[-1] == "softmax" else torch.float64)
    # torch's own layout: W (n_l, n_{l-1}) as in nn.Linear, b (n_l,)
    W = [torch.tensor(init[f"W{l}"], dtype=torch.float64, requires_grad=True) for l in range(1, layers + 1)]
    b = [torch.tensor(init[f"b{l}"][:, 0], dtype=torch.float64, requires_grad=True) for l in range(1, layers + 1)]
    params = [p for pair in zip(W, b) for p in pair]
    lr, l2, optimizer = options["learning_rate"], options["l2"], options["optimizer"]
    if optimizer == "adam":
        opt = torch.optim.Adam(
            params,
            lr=lr,
            betas=(options["beta1"], options["beta2"]),
            eps=options["epsilon"],
            weight_decay=0.0,
            amsgrad=False,
            maximize=False,
            foreach=False,
        )
    elif optimizer == "gd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0, foreach=False)
    else:
        opt = None
        velocity = [torch.zeros_like(p) for p in params]

    costs = []
    batch_size = options["batch_size"] or m
    for order in orders:
        total = 0.0
        for start in range(0, m, batch_size):
            index = torch.tensor(order[start : start + batch_size])
            A = X[index]
            for l in range(layers - 1):
                A = HIDDEN[activations[l]](F.linear(A, W[l], b[l]))
            logits = F.linear(A, W[-1], b[-1])
            loss = batch_loss_sum(logits, y[index], activations[-1])
            if l2 != 0:
                loss = loss + l2 / 2 * sum((w * w).sum() for w in W)
            total += loss.item()
            for p in params:
                p.grad = None
            (loss / len(index)).backward()
            with torch.no_grad():
                if opt is not None:
                    opt.step()
                else:  # momentum: v = beta * v + (1 - beta) * dP; P = P - lr * v
                    beta = options["beta"]
                    for p, v in zip(params, velocity):
                        v.mul_(beta).add_(p.grad, alpha=1.0 - beta)
                        p.sub_(lr * v)
        costs.append(total / m)

    final = {}
    state = {}
    for l in range(layers):
        final[f"W{l + 1}"] = W[l].detach().numpy().copy()
        final[f"b{l + 1}"] = b[l].detach().numpy().copy()[:, None]
    updates = len(orders) * -(-m // batch_size)
    state["t"] = np.array(updates, dtype=np.int64)
    names = [name for l in range(1, layers + 1) for name in (f"W{l}", f"b{l}")]  # the order of `params`
    for i, (name, p) in enumerate(zip(names, params)):
        shape = final[name].shape
        if optimizer == "adam":
            s = opt.state[p]
            assert int(s["step"]) == updates
            state[f"v_{name}"] = s["exp_avg"].numpy().reshape(shape).copy()
            state[f"s_{name}"] = s["exp_avg_sq"].numpy().reshape(shape).copy()
        elif optimizer == "momentum":
            state[f"v_{name}"] = velocity[i].numpy().reshape(shape).copy()
    return init, np.array(orders), final, np.array(costs), state


def main():
    torch.set_num_threads(1)
    arrays = {}
    meta_runs = {}
    for name, spec in RUNS.items():
        X, y = make_data(spec["data"])
        init, orders, final, costs, state = run(X, y, spec["options"])
        arrays[f"{name}.X"] = X
        arrays[f"{name}.y"] = y
        arrays[f"{name}.orders"] = orders
        arrays[f"{name}.costs"] = costs
        for key, value in init.items():
            arrays[f"{name}.init.{key}"] = value
        for key, value in final.items():
            arrays[f"{name}.params.{key}"] = value
        for key, value in state.items():
            arrays[f"{name}.state.{key}"] = value
        meta_runs[name] = spec
        print(name, "costs", costs)
    np.savez_compressed(OUT / "torch_reference.npz", **arrays)
    meta = {
        "what": "three training runs computed in PyTorch float64 from LNN's definitions; see make_torch_fixture.py",
        "command": ".venv/bin/python tests/reference/make_torch_fixture.py",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "npz_keys": "<run>.X, <run>.y, <run>.orders (epochs, m: the example order of each epoch, batches are "
        "consecutive batch_size slices), <run>.costs (per epoch), <run>.init.<W|b><l>, "
        "<run>.params.<W|b><l>, <run>.state.<t|v_*|s_*> (LNN's optimizer state names)",
        "runs": meta_runs,
    }
    (OUT / "torch_reference.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
