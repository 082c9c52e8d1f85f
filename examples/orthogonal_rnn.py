"""A recurrent network on the adding problem: free, orthogonal, spectrally bounded.

The adding problem (Hochreiter and Schmidhuber, 1997): a sequence of
``--length`` steps carries two channels, a random value in [0, 1] and a
marker that is 1 at two random steps; the target is the sum of the two
marked values. Always answering 1 gives a mean squared error of 1/6; a
network must carry the first marked value across the sequence to do
better, which is where the recurrent matrix's spectrum matters: singular
values above 1 make gradients explode, below 1 make them vanish.

The same tanh network, from the same orthogonal initial recurrent matrix and
on the same batches, is trained with ``optax.adam`` three times:

- ``free``: no constraint;
- ``orthogonal``: the recurrent matrix is ``jb.constrain(raw, c)`` of
  ``jb.Orthogonal()`` (the Cayley map), and Adam moves the raw values:
  every singular value stays 1;
- ``spectral``: ``jb.project_to_constraints`` of ``jb.SpectralNorm(1.0)`` at
  the end of the chain: the largest singular value never passes 1.

It prints the loss every ``--log-every`` steps and the singular values of
each trained recurrent matrix, and writes the loss curves and the spectra
to ``--out/orthogonal_rnn.png``.

Run:  python examples/orthogonal_rnn.py [--steps 400] [--out examples/out]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import jaxbounds as jb

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

HIDDEN = 32
RUNS = ("free", "orthogonal", "spectral")


def batch(key: jax.Array, size: int, length: int) -> tuple[jax.Array, jax.Array]:
    """Adding-problem sequences ``(size, length, 2)`` and their targets ``(size,)``."""
    kv, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(kv, (size, length))
    first = jax.random.randint(k1, (size,), 0, length // 2)
    second = jax.random.randint(k2, (size,), length // 2, length)
    steps = jnp.arange(length)
    marks = (steps == first[:, None]) | (steps == second[:, None])
    x = jnp.stack([values, marks.astype(values.dtype)], axis=-1)
    return x, jnp.sum(values * marks, axis=1)


def init(key: jax.Array) -> dict:
    """Small input and output weights; an orthogonal recurrent matrix (det +1)."""
    ki, kr, ko = jax.random.split(key, 3)
    q, r = jnp.linalg.qr(jax.random.normal(kr, (HIDDEN, HIDDEN)))
    q = q * jnp.sign(jnp.diagonal(r))
    q = q * jnp.where(jnp.arange(HIDDEN) == 0, jnp.sign(jnp.linalg.det(q)), 1)
    return {
        "w_in": jax.random.normal(ki, (2, HIDDEN)) * 0.5,
        "w_rec": q,
        "b": jnp.zeros(HIDDEN),
        "w_out": jax.random.normal(ko, (HIDDEN,)) / np.sqrt(HIDDEN),
        "b_out": jnp.ones(()),
    }


def predict(params: dict, x: jax.Array) -> jax.Array:
    def step(h: jax.Array, xt: jax.Array) -> tuple[jax.Array, None]:
        return jnp.tanh(h @ params["w_rec"] + xt @ params["w_in"] + params["b"]), None

    h0 = jnp.zeros((x.shape[0], HIDDEN))
    h, _ = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return h @ params["w_out"] + params["b_out"]


def mse(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((predict(params, x) - y) ** 2)


def train(run: str, args: argparse.Namespace) -> tuple[list[float], np.ndarray]:
    """Loss per step and the trained recurrent matrix's singular values."""
    params = init(jax.random.key(args.seed))
    orth = jb.Constraints(("w_rec", jb.Orthogonal()))
    spec = jb.Constraints(("w_rec", jb.SpectralNorm(1.0)))
    if run == "orthogonal":
        free = jb.unconstrain(params, orth)  # raw values: Adam moves these

        def loss(raw: dict, x: jax.Array, y: jax.Array) -> jax.Array:
            return mse(jb.constrain(raw, orth), x, y)

        opt = optax.adam(args.lr)
    else:
        free, loss = params, mse
        opt = optax.adam(args.lr)
        if run == "spectral":
            opt = optax.chain(opt, jb.project_to_constraints(spec))

    @jax.jit
    def update(free: dict, state: optax.OptState, key: jax.Array) -> tuple:
        x, y = batch(key, args.batch, args.length)
        value, grads = jax.value_and_grad(loss)(free, x, y)
        updates, state = opt.update(grads, state, free)
        return optax.apply_updates(free, updates), state, value

    state = opt.init(free)
    losses = []
    keys = jax.random.split(jax.random.key(args.seed + 1), args.steps)
    for i, key in enumerate(keys):
        free, state, value = update(free, state, key)
        losses.append(float(value))
        if (i + 1) % args.log_every == 0:
            recent = np.mean(losses[-args.log_every :])
            print(f"  [{run}] step {i + 1:4d}/{args.steps}  loss {recent:.4f}")
    trained = jb.constrain(free, orth) if run == "orthogonal" else free
    if run == "spectral":
        assert jb.violations(trained, spec).ok
    return losses, np.linalg.svd(np.asarray(trained["w_rec"]), compute_uv=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps per run")
    parser.add_argument("--length", type=int, default=20, help="sequence length")
    parser.add_argument("--batch", type=int, default=64, help="sequences per step")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--log-every", type=int, default=100, help="progress period")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="directory for the plot",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    results = {}
    for run in RUNS:
        results[run] = train(run, args)
    print(f"Outcome after {args.steps} steps (baseline: always 1, mse 0.1667):")
    for run, (losses, s) in results.items():
        last = np.mean(losses[-max(1, args.steps // 10) :])
        print(
            f"  {run}: final loss {last:.4f}; singular values of w_rec: "
            f"max {s.max():.6f}, min {s.min():.6f}"
        )
        print("    spectrum:", np.array2string(s[:8], precision=3), "...")
    args.out.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for run, (losses, s) in results.items():
        ax1.plot(np.convolve(losses, np.ones(10) / 10, mode="valid"), label=run)
        ax2.plot(s, "o-", ms=3, label=run)
    ax1.axhline(1 / 6, color="grey", ls=":", label="always 1")
    ax1.set(xlabel="step", ylabel="mse (10-step mean)", yscale="log", title="loss")
    ax2.set(xlabel="index", ylabel="singular value", title="spectrum of w_rec")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(args.out / "orthogonal_rnn.png", dpi=100)
    print(
        f"wrote {args.out / 'orthogonal_rnn.png'} ({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    main()
