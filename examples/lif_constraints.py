"""A spiking network trained without and with bounds on its time constants.

A small leaky-integrate-and-fire (LIF) network, written in equinox, must
remember which of three groups of input channels carried a brief burst of
spikes, and report it 60 ms later. Each neuron's synaptic current and
membrane potential leak by a *decay* per 1 ms time step, ``d = exp(-dt/tau)``.
A decay is valid in (0, 1); here time constants are also bounded to
[2 ms, 100 ms], i.e. decays to [0.607, 0.990]. Remembering across the delay
rewards long time constants, and nothing in plain gradient descent stops a
decay at 1: past it a neuron amplifies instead of leaking (a negative time
constant), and the optimiser happily uses that to hold the memory.

The same network, from the same initial values and on the same batches, is
trained three times by default (``--runs`` picks others):

- ``none``: ``optax.adam`` alone;
- ``penalty``: ``jaxbounds.add_bounds_penalty`` between Adam's scaling and the
  learning rate (decoupled from Adam's normalisation, as AdamW decouples
  weight decay): a soft pull back towards the bounds;
- ``project``: ``jaxbounds.project_to_bounds`` at the end of the chain: the
  parameters never leave their bounds;

and on request also

- ``loss-penalty``: Rockpool's recipe, ``loss + bounds_cost`` (as
  ``add_bounds_penalty`` before ``optax.adam``: the same updates);
- ``reparam``: Adam on raw values, mapped into the bounds by
  ``jaxbounds.constrain`` in the loss (with a larger learning rate for the
  decays' raw values).

It prints a progress line every ``--log-every`` steps, writes PNG plots to
``--out`` and ends with the measured outcome of every run. It finishes in
well under a minute on 2 CPU cores.

Run:  python examples/lif_constraints.py [--steps 300] [--out DIR]
(the plots go to ``out/`` next to this script unless ``--out`` says otherwise)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import jaxbounds as jb

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

DT = 1e-3  # s, one time step
T_CUE, T_DELAY, T_READ = 10, 60, 10  # steps: cue, delay, then the readout window
T = T_CUE + T_DELAY + T_READ
N_CLASSES, N_PER_CLASS = 3, 8
N_IN, N_HID = N_CLASSES * N_PER_CLASS, 32
RATE_CUE, RATE_NOISE = 0.3, 0.05  # spike probability per channel and step
TAU_MIN, TAU_MAX = 2e-3, 100e-3  # s
DECAY_MIN, DECAY_MAX = math.exp(-DT / TAU_MIN), math.exp(-DT / TAU_MAX)
THRESHOLD_MIN = 0.1
DECAYS = ("lif.alpha", "lif.beta", "readout.alpha")


# - Spikes: a Heaviside step forward, a fast-sigmoid surrogate gradient backward
@jax.custom_jvp
def spike(x: jax.Array) -> jax.Array:
    return (x > 0).astype(x.dtype)


@spike.defjvp
def _spike_jvp(primals: tuple, tangents: tuple) -> tuple:
    (x,), (dx,) = primals, tangents
    return spike(x), dx / (1.0 + 10.0 * jnp.abs(x)) ** 2


class LIF(eqx.Module):
    """Current-based LIF neurons with a subtractive reset, as Rockpool's LIFJax.

    Bounds and families are declared on the fields: `jb.make_bounds` starts
    from the declared ``lower``, and `jb.family_mask` finds each family.
    """

    weight: jax.Array
    alpha: jax.Array = jb.field(family="decays")  # membrane decay per step
    beta: jax.Array = jb.field(family="decays")  # synaptic decay per step
    bias: jax.Array
    threshold: jax.Array = jb.field(lower=THRESHOLD_MIN, family="thresholds")

    def __init__(self, n_in: int, n_out: int, key: jax.Array) -> None:
        f32 = jnp.float32
        self.weight = jax.random.normal(key, (n_in, n_out), f32) / math.sqrt(n_in)
        self.alpha = jnp.full(n_out, 0.9, f32)  # tau_mem 9.5 ms
        self.beta = jnp.full(n_out, 0.8, f32)  # tau_syn 4.5 ms
        self.bias = jnp.zeros(n_out, f32)
        self.threshold = jnp.ones(n_out, f32)

    def step(self, state: tuple, x: jax.Array) -> tuple:
        i_syn, v_mem = state
        i_syn = self.beta * i_syn + x @ self.weight
        v_mem = self.alpha * v_mem + i_syn + self.bias
        s = spike(v_mem - self.threshold)
        return (i_syn, v_mem - s * self.threshold), s


class Readout(eqx.Module):
    """Leaky integrators (non-spiking membranes) that read the spikes out."""

    weight: jax.Array
    alpha: jax.Array = jb.field(family="decays")

    def __init__(self, n_in: int, n_out: int, key: jax.Array) -> None:
        f32 = jnp.float32
        self.weight = jax.random.normal(key, (n_in, n_out), f32) / math.sqrt(n_in)
        self.alpha = jnp.full(n_out, 0.9, f32)


class Net(eqx.Module):
    lif: LIF
    readout: Readout

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.lif = LIF(N_IN, N_HID, k1)
        self.readout = Readout(N_HID, N_CLASSES, k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Input spikes ``(T, N_IN)`` -> readout membranes ``(T, N_CLASSES)``."""

        def step(state: tuple, x_t: jax.Array) -> tuple:
            lif_state, y = state
            lif_state, s = self.lif.step(lif_state, x_t)
            y = self.readout.alpha * y + s @ self.readout.weight
            return (lif_state, y), y

        zeros = jnp.zeros(N_HID, x.dtype)
        init = ((zeros, zeros), jnp.zeros(N_CLASSES, x.dtype))
        return jax.lax.scan(step, init, x)[1]


def make_batch(key: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Trials: a burst on one channel group, then noise; the label is the group."""
    k_label, k_spikes = jax.random.split(key)
    labels = jax.random.randint(k_label, (size,), 0, N_CLASSES)
    t = jnp.arange(T)[None, :, None]
    group = (jnp.arange(N_IN) // N_PER_CLASS)[None, None, :]
    cued = (t < T_CUE) & (group == labels[:, None, None])
    x = jax.random.bernoulli(k_spikes, jnp.where(cued, RATE_CUE, RATE_NOISE))
    return x.astype(jnp.float32), labels


def task_loss(net: Net, x: jax.Array, labels: jax.Array) -> tuple:
    """Cross-entropy of the mean readout over the last steps; and the accuracy."""
    logits = jax.vmap(net)(x)[:, -T_READ:].mean(axis=1)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, jnp.mean(logits.argmax(-1) == labels)


@eqx.filter_jit
def loss_and_grads(net: Net, key: jax.Array, batch: int) -> tuple:
    """Loss, accuracy and gradients on a fresh batch; compiled once for all runs."""
    x, labels = make_batch(key, batch)
    return jax.value_and_grad(task_loss, has_aux=True)(net, x, labels)


@eqx.filter_jit
def raw_loss_and_grads(raw: Net, lower: Net, upper: Net, key: jax.Array, batch: int):
    """The same, for raw values mapped into the bounds by `jb.constrain`."""
    x, labels = make_batch(key, batch)

    def loss(raw: Net) -> tuple:
        return task_loss(jb.constrain(raw, lower, upper), x, labels)

    return jax.value_and_grad(loss, has_aux=True)(raw)


def make_bounds(net: Net) -> tuple[Net, Net]:
    """Thresholds >= 0.1 (declared by jb.field); decays for tau in [2, 100] ms."""
    lower, upper = jb.make_bounds(net)
    decays = jb.family_mask(net, "decays")
    lower = jb.set_where(lower, decays, DECAY_MIN)
    upper = jb.set_where(upper, decays, DECAY_MAX)
    return lower, upper


class Method(NamedTuple):
    optimizer: optax.GradientTransformation
    reparam: bool = False  # optimise raw values, constrain them in the loss


def methods(
    net: Net, lower: Net, upper: Net, lr: float, penalty_scale: float
) -> dict[str, Method]:
    """Ways to train, by name (``--runs``)."""
    decay_labels = jax.tree.map(
        lambda d: "decays" if d else "rest", jb.family_mask(net, "decays")
    )
    return {
        "none": Method(optax.adam(lr)),
        # - The penalty's gradient (scale * exp(violation)) added to Adam's
        #   direction, before the learning rate: a violation is pulled back
        #   by about scale * lr per step, whatever the task's gradients.
        "penalty": Method(
            optax.chain(
                optax.scale_by_adam(),
                jb.add_bounds_penalty(lower, upper, scale=penalty_scale),
                optax.scale(-lr),
            )
        ),
        # - Rockpool's recipe, loss + bounds_cost, written as a chain (the same
        #   updates): the penalty's gradient is normalised by Adam with the rest
        "loss-penalty": Method(
            optax.chain(jb.add_bounds_penalty(lower, upper), optax.adam(lr))
        ),
        # - Updates rewritten so that params + updates lands in the box
        "project": Method(
            optax.chain(optax.adam(lr), jb.project_to_bounds(lower, upper))
        ),
        # - Adam on raw values; the model is jb.constrain(raw), always inside.
        #   A step of lr in raw moves a decay by lr * (upper - lower) * s(1 - s)
        #   (s the sigmoid), about lr * 0.07 at the start: the decays' raw
        #   values get a 20x larger learning rate to move as fast as the rest.
        "reparam": Method(
            optax.multi_transform(
                {"decays": optax.adam(20 * lr), "rest": optax.adam(lr)},
                lambda _: decay_labels,  # (a callable: an equinox model is one)
            ),
            reparam=True,
        ),
    }


class Run(NamedTuple):
    name: str
    net: Net
    loss: list[float]  # per step
    cost: list[float]  # bounds_cost after each step
    decays: dict[str, np.ndarray]  # path -> (steps + 1, n) values, from step 0
    worst: float  # largest distance outside the bounds seen during training
    diverged_at: int | None


def decay_values(net: Net) -> dict[str, np.ndarray]:
    return {
        "lif.alpha": np.asarray(net.lif.alpha),
        "lif.beta": np.asarray(net.lif.beta),
        "readout.alpha": np.asarray(net.readout.alpha),
    }


def train(
    name: str,
    method: Method,
    net: Net,
    lower: Net,
    upper: Net,
    *,
    steps: int,
    batch: int,
    log_every: int,
    seed: int,
) -> Run:
    optimizer = method.optimizer

    def model(params: Net) -> Net:
        return jb.constrain(params, lower, upper) if method.reparam else params

    @eqx.filter_jit
    def apply(params: Net, grads: Net, state: optax.OptState) -> tuple:
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        # - Reported in every run; trained on only by the penalties
        return params, state, model(params), jb.bounds_cost(model(params), lower, upper)

    params = jb.unconstrain(net, lower, upper) if method.reparam else net
    state = optimizer.init(params)
    history = {k: [v] for k, v in decay_values(net).items()}
    losses, costs = [], []
    worst, diverged_at = 0.0, None
    key = jax.random.PRNGKey(seed)
    for i in range(1, steps + 1):
        key, sub = jax.random.split(key)
        if method.reparam:
            (loss, acc), grads = raw_loss_and_grads(params, lower, upper, sub, batch)
        else:
            (loss, acc), grads = loss_and_grads(params, sub, batch)
        params, state, net, cost = apply(params, grads, state)
        loss, acc, cost = float(loss), float(acc), float(cost)
        losses.append(loss)
        costs.append(cost)
        for k, v in decay_values(net).items():
            history[k].append(v)
        report = jb.violations(net, lower, upper)
        for r in report.violating:
            worst = max(worst, r.worst_below, r.worst_above)
        if not (math.isfinite(loss) and math.isfinite(cost)):
            diverged_at = i
            print(f"  [{name}] step {i}: loss {loss}, the run diverged; stopping it")
            break
        if i % log_every == 0 or i == steps:
            lo = min(float(v[-1].min()) for v in history.values())
            hi = max(float(v[-1].max()) for v in history.values())
            print(
                f"  [{name}] step {i:4d}/{steps}  loss {loss:6.4f}  "
                f"accuracy {acc:4.2f}  bounds cost {cost:8.4g}  "
                f"decays in [{lo:.3f}, {hi:.3f}]"
            )
    decays = {k: np.stack(v) for k, v in history.items()}
    return Run(name, net, losses, costs, decays, worst, diverged_at)


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def tau_ms(decay: float) -> float:
    """The time constant (ms) of a decay per step: negative for a decay above 1."""
    if decay <= 0:
        return math.nan
    if decay == 1:
        return math.inf
    return -DT / math.log(decay) * 1e3


def save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write and close a figure; return where it went."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_penalty(out: Path) -> Path:
    """bounds_cost of one element across the box (0, 1), as in Rockpool's how-to."""
    xs = jnp.linspace(-1.0, 2.0, 1001)
    cost = jax.vmap(lambda x: jb.bounds_cost({"x": x}, {"x": 0.0}, {"x": 1.0}))(xs)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot(xs, cost)
    ax.plot([0, 0], [0, 3], "r:")
    ax.plot([1, 1], [0, 3], "r:")
    ax.set_xlabel("Parameter value")
    ax.set_ylabel("Cost")
    ax.set_title("bounds_cost for the bounds (0, 1)")
    return save(fig, out / "penalty_curve.png")


def plot_trajectories(runs: list[Run], out: Path) -> Path:
    """Every decay over training, one panel per parameter and run."""
    fig, axes = plt.subplots(
        len(runs),
        len(DECAYS),
        figsize=(5 * len(DECAYS), 3.0 * len(runs)),
        dpi=100,
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    top = max(1.02, max(float(r.decays[k].max()) for r in runs for k in DECAYS))
    for row, run in zip(axes, runs):
        for ax, key in zip(row, DECAYS):
            values = run.decays[key]
            ax.axhspan(DECAY_MIN, DECAY_MAX, color="g", alpha=0.1, label="bounds")
            ax.axhline(1.0, color="r", ls=":", lw=1.2, label="decay 1 (tau = inf)")
            ax.plot(np.arange(len(values)), values, lw=0.8, alpha=0.7)
            ax.set_ylim(DECAY_MIN - 0.05, top + 0.02)
            ax.set_title(f"{key}, run {run.name!r}", fontsize=10)
        row[0].set_ylabel("decay per step")
        row[0].legend(fontsize=8, loc="lower left")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    return save(fig, out / "trajectories.png")


def plot_training(runs: list[Run], out: Path) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5), dpi=100)
    for run in runs:
        steps = np.arange(1, len(run.loss) + 1)
        ax1.plot(steps, run.loss, lw=0.8, label=run.name)
        ax2.plot(steps, run.cost, lw=0.8, label=run.name)
    ax1.set_title("task loss (training batches)")
    ax1.set_yscale("log")
    ax2.set_title("bounds_cost after each step")
    ax2.set_yscale("symlog", linthresh=1.0)
    for ax in (ax1, ax2):
        ax.set_xlabel("training step")
        ax.legend()
    return save(fig, out / "training.png")


def outcome(run: Run, lower: Net, upper: Net, x: jax.Array, labels: jax.Array) -> str:
    """One line of measured results for a trained run."""
    loss, acc = eqx.filter_jit(task_loss)(run.net, x, labels)
    report = jb.violations(run.net, lower, upper)
    outside = sum(r.below + r.above + r.nan for r in report.rows)
    final = np.concatenate([run.decays[k][-1] for k in DECAYS])
    invalid = int(np.sum((final <= 0) | (final >= 1)))
    seen = max(float(run.decays[k].max()) for k in DECAYS)
    status = (
        f"DIVERGED at step {run.diverged_at}"
        if run.diverged_at is not None
        else f"held-out loss {float(loss):.4f}, accuracy {float(acc):.3f}"
    )
    return (
        f"  {run.name:>12}: {outside} of {report.size} parameters outside their "
        f"bounds, {invalid} of {final.size} decays outside (0, 1); largest decay "
        f"during training {seen:.4f} (tau {tau_ms(seen):+.1f} ms), worst "
        f"excursion past a bound {run.worst:.4f}; {status}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per run")
    parser.add_argument("--batch", type=int, default=64, help="trials per step")
    parser.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate")
    parser.add_argument("--penalty-scale", type=float, default=2.0)
    parser.add_argument(
        "--runs",
        default="none,penalty,project",
        help="comma-separated, from none,penalty,loss-penalty,project,reparam",
    )
    parser.add_argument("--log-every", type=int, default=25, help="progress period")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="directory for the PNG plots (created if missing)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()

    net = Net(jax.random.PRNGKey(args.seed))
    lower, upper = make_bounds(net)
    choices = methods(net, lower, upper, args.lr, args.penalty_scale)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(choices))
    if unknown or not names:
        parser.error(f"--runs takes a subset of {','.join(choices)}, got {args.runs}")
    print(
        f"LIF network: {N_IN} inputs -> {N_HID} LIF neurons -> {N_CLASSES} leaky "
        f"readouts; trials of {T} steps of {DT * 1e3:g} ms, cue in the first "
        f"{T_CUE}, answer in the last {T_READ}"
    )
    print(
        f"Bounds: time constants in [{TAU_MIN * 1e3:g}, {TAU_MAX * 1e3:g}] ms, "
        f"i.e. decays in [{DECAY_MIN:.4f}, {DECAY_MAX:.4f}]; thresholds >= "
        f"{THRESHOLD_MIN:g}; weights and biases unbounded"
    )

    runs = []
    for name in names:
        print(f"\nTraining {name!r} (Adam, learning rate {args.lr:g}):")
        runs.append(
            train(
                name,
                choices[name],
                net,
                lower,
                upper,
                steps=args.steps,
                batch=args.batch,
                log_every=args.log_every,
                seed=args.seed + 1,
            )
        )

    args.out.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_penalty(args.out),
        plot_trajectories(runs, args.out),
        plot_training(runs, args.out),
    ]
    print("\nPlots written: " + ", ".join(shown(p) for p in plots))

    for run in runs:
        report = jb.violations(run.net, lower, upper)
        print(f"\njb.violations after training with {run.name!r}:\n{report}")

    x_test, labels_test = make_batch(jax.random.PRNGKey(12345), 1024)
    print(f"\nOutcome after {args.steps} steps (held-out batch of 1024 trials):")
    for run in runs:
        print(outcome(run, lower, upper, x_test, labels_test))
    print(f"Total time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
