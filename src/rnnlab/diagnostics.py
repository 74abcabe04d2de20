"""Gradient flow through time: what reaches each step and layer, logged while a run trains.

With ``diagnostics.enabled=true``, every ``diagnostics.every_n_epochs`` epochs (and after the
last) the run measures, on a fixed batch of ``diagnostics.samples`` training sequences, with the
network in eval mode:

- ``||dL/dh_t||`` for every step t and every layer (the norm over the batch and the units of the
  gradient of the batch's loss with respect to that layer's output at step t). Stacked fused
  layers are run one by one on the same parameters for this, so each layer's states can be read;
- the largest singular value of every recurrent weight (``weight_hh_*``);
- the share of each layer's outputs beyond 0.99 in magnitude (tanh saturation);
- for a backbone with gates (lstm, gru, ln_lstm), each gate's saturation as Karpathy, Johnson &
  Fei-Fei (2016) count it: the share of its activations below 0.1 (left: closed) and above 0.9
  (right: open), a tanh gate (the LSTM's cell input, the GRU's candidate) mapped to [0, 1] first;

and, on every training step, the gradient norm of every parameter before clipping and whether
clipping fired (summed on the device, read once an epoch; the norms are those the non-finite guard
records anyway, so this costs the step nothing). MLflow gets ``diag/*`` metrics by epoch,
``diagnostics/grad_flow.json`` and two plots: ``plots/grad_flow.png`` (log10 ||dL/dh_t|| over
epochs x steps, a panel per layer) and ``plots/diagnostics.png`` (the rest over epochs).

The verdict (:func:`verdict`): the ratio ``||dL/dh_1|| / ||dL/dh_T||`` of the first layer at the
last measurement decides it (below 1e-2 vanishing, above 1e2 exploding); the clipping rate is
given beside it (clipping at the default norm 1.0 fires often early in any training). It is meant
for a loss at the last step (the adding problem, sequence classification, forecasting): with a
loss at every step, dL/dh_1 holds step 1's own loss and the ratio says little.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

log = logging.getLogger(__name__)

VANISHING = 1e-2  # ratio below: the first step gets under 1 % of what the last gets
EXPLODING = 1e2  # ratio above


def verdict(ratio: float, clip_rate: float | None) -> tuple[str, str]:
    """``(kind, sentence)``: kind is ``vanishing``, ``exploding`` or ``healthy``."""
    clip = "" if clip_rate is None else f", gradients clipped on {clip_rate:.0%} of steps"
    if not math.isfinite(ratio) or ratio > EXPLODING:
        kind = "exploding"
    elif ratio < VANISHING:
        kind = "vanishing"
    else:
        kind = "healthy"
    return kind, f"gradient flow: {kind} (||dL/dh_1|| / ||dL/dh_T|| = {ratio:.3g}{clip})"


def measure(model: Any, batch: tuple[Tensor, ...]) -> dict[str, Any]:
    """One measurement on ``batch`` with ``model`` (a SequenceModel) in eval mode: per layer the
    (T,) norms of dL/dh_t and the saturation, and every recurrent weight's largest singular value."""
    net = model.net
    x, y, lengths = batch[0], batch[1], (batch[2] if len(batch) > 2 else None)
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad(), net.backbone.recording_layers() as layers:
            gate_layers = net.backbone.recording_gates()  # filled by the forward below
            out = net.outputs(x, lengths)[1]
            loss = model.loss_of(out, y, lengths)
            states = [h for layer in layers for h in layer]  # every layer's h_1 .. h_T
            grads = torch.autograd.grad(loss, states, allow_unused=True) if states else ()
    finally:
        net.train(was_training)
    per_layer = []
    flat = iter(zip(states, grads, strict=True))
    for index, layer in enumerate(layers):
        pairs = [next(flat) for _ in layer]
        norms = [0.0 if g is None else g.detach().norm() for _, g in pairs]
        per_layer.append(
            {
                "grad_h": torch.stack([torch.as_tensor(n) for n in norms]).tolist(),  # (T,)
                "saturation": float(torch.stack([h.detach() for h, _ in pairs]).abs().gt(0.99).float().mean()),
                "gates": gate_saturation(gate_layers[index]) if gate_layers and index < len(gate_layers) else {},
            }
        )
    sigma = {
        name: float(torch.linalg.matrix_norm(w.detach().float(), ord=2))
        for name, w in net.backbone.recurrent_weights().items()
    }
    return {"loss": float(loss.detach()), "layers": per_layer, "sigma_max": sigma}


TANH_GATES = frozenset({"cell", "candidate"})  # in [-1, 1]; the others are sigmoids in [0, 1]


def gate_saturation(steps: list[dict[str, Tensor]]) -> dict[str, dict[str, float]]:
    """Each step's {gate: activation (B, H)} -> {gate: {"left": share < 0.1, "right": share > 0.9}}."""
    out = {}
    for name in steps[0] if steps else ():
        a = torch.stack([s[name].detach() for s in steps]).float()
        a = (a + 1) / 2 if name in TANH_GATES else a
        out[name] = {"left": float((a < 0.1).float().mean()), "right": float((a > 0.9).float().mean())}
    return out


class GradientFlow(pl.Callback):
    def __init__(self, *, every_n_epochs: int, samples: int, clip_val: float | None, run: Any, out_dir: Path) -> None:
        self.every = every_n_epochs
        self.samples = samples
        self.clip_val = clip_val
        self.run = run
        self.out_dir = out_dir
        self.history: list[dict[str, Any]] = []
        self.batch: tuple[Tensor, ...] | None = None
        self.names: list[str] = []
        self.params: list[Tensor] = []
        self._sums: dict[str, Tensor] = {}
        self._per_step = True
        self._algorithm: Any = None  # how gradients are clipped: "norm" or "value"
        self.summary: dict[str, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        from rnnlab.guard import NonFiniteGuard

        train = trainer.datamodule.splits["train"]  # type: ignore[attr-defined]
        self.batch = tuple(t[: self.samples].to(module.device) for t in train)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names, self.params = [n for n, _ in named], [p for _, p in named]
        # The guard already records every parameter's gradient norm each step: sum its windows
        # (nothing added to the step). Clipping by value needs each gradient's largest entry, which
        # the norms do not give: then this callback measures each step itself.
        # Truncated BPTT (manual optimization) steps several times a batch, where the guard keeps one
        # row a batch, and clips in the module (rnnlab.model.SequenceModel): then every step is
        # measured here too.
        guards = [c for c in trainer.callbacks if isinstance(c, NonFiniteGuard)]  # type: ignore[attr-defined]
        manual = not module.automatic_optimization
        algorithm = getattr(module, "gradient_clip_algorithm", None) if manual else trainer.gradient_clip_algorithm
        self._algorithm = algorithm
        self._per_step = not guards or self._algorithm == "value" or manual
        if not self._per_step and self._add_window not in guards[0].listeners:
            guards[0].listeners.append(self._add_window)

    def _add_window(self, norms: Tensor) -> None:
        """A window of per-step gradient norms (steps, parameters) from the guard: summed on the device."""
        s = self._sums
        s["norms"] = s.get("norms", torch.zeros_like(norms[0])) + norms.sum(0)
        s["steps"] = s.get("steps", torch.zeros((), device=norms.device)) + norms.size(0)
        if self.clip_val:  # the norm clipping sees: of all gradients together
            fired = (norms.float().pow(2).sum(1).sqrt() > self.clip_val).sum()
            s["clipped"] = s.get("clipped", torch.zeros((), device=norms.device)) + fired.float()

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any) -> None:
        if not self._per_step:
            return
        grads = [p.grad for p in self.params]
        present = [g for g in grads if g is not None]
        if not present:
            return
        norms = torch.zeros(len(grads), device=module.device)
        norms[[i for i, g in enumerate(grads) if g is not None]] = torch.stack(torch._foreach_norm(present))
        s = self._sums
        s["norms"] = s.get("norms", torch.zeros_like(norms)) + norms
        s["steps"] = s.get("steps", torch.zeros((), device=norms.device)) + 1
        if self.clip_val:
            if self._algorithm == "value":
                fired = torch.stack([g.abs().max() for g in present]).max() > self.clip_val
            else:
                fired = norms.norm() > self.clip_val
            s["clipped"] = s.get("clipped", torch.zeros((), device=norms.device)) + fired.float()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0)
        if (epoch + 1) % self.every == 0 or last or trainer.should_stop:
            self._measure(trainer, module, epoch)

    def _measure(self, trainer: pl.Trainer, module: pl.LightningModule, epoch: int) -> None:
        if self.batch is None or not trainer.is_global_zero:
            return
        m = measure(module, self.batch)
        if not m["layers"] and not self.history:
            log.warning(
                "diagnostics: %s records no per-step states; only weights and gradient norms are logged",
                type(getattr(getattr(module, "net", None), "backbone", None)).__name__,
            )
        metrics: dict[str, float] = {}
        for layer, d in enumerate(m["layers"]):
            g = d["grad_h"]
            metrics[f"diag/grad_h_first/layer{layer}"] = g[0]
            metrics[f"diag/grad_h_last/layer{layer}"] = g[-1]
            metrics[f"diag/grad_h_ratio/layer{layer}"] = g[0] / g[-1] if g[-1] > 0 else float("nan")
            metrics[f"diag/saturation/layer{layer}"] = d["saturation"]
            for gate, share in d.get("gates", {}).items():
                metrics[f"diag/gate_left/layer{layer}/{gate}"] = share["left"]
                metrics[f"diag/gate_right/layer{layer}/{gate}"] = share["right"]
        metrics.update({f"diag/sigma_max/{n}": v for n, v in m["sigma_max"].items()})
        s, self._sums = self._sums, {}
        if s:
            steps = float(s["steps"])
            mean_norms = (s["norms"] / steps).tolist()
            metrics.update({f"diag/grad_norm/{n}": v for n, v in zip(self.names, mean_norms, strict=True)})
            if "clipped" in s:
                metrics["diag/clip_rate"] = float(s["clipped"]) / steps
        self.history.append({"epoch": epoch, **m, "clip_rate": metrics.get("diag/clip_rate")})
        if self.run is not None:
            self.run.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=epoch)
        if "diag/grad_h_ratio/layer0" in metrics:
            ratio = metrics["diag/grad_h_ratio/layer0"]
            self.summary = {"ratio": ratio, "clip_rate": metrics.get("diag/clip_rate"), "epoch": epoch}

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.summary or not trainer.is_global_zero:
            return
        kind, sentence = verdict(self.summary["ratio"], self.summary["clip_rate"])
        self.summary.update(kind=kind, sentence=sentence)
        folder = self.out_dir / "diagnostics"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "grad_flow.json").write_text(json.dumps({"history": self.history, "verdict": self.summary}))
        paths = plot(self.history, folder)
        if self.run is not None:
            self.run.set_tags({"rnnlab.diagnostics.verdict": sentence})
            self.run.log_artifact(folder / "grad_flow.json", "diagnostics")
            for p in paths:
                self.run.log_artifact(p, "plots")
        log.info("%s", sentence)


def plot(history: list[dict[str, Any]], folder: Path) -> list[Path]:
    """grad_flow.png (log10 ||dL/dh_t||, epochs x steps, a panel per layer) and diagnostics.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    epochs = [h["epoch"] for h in history]
    layers = len(history[-1]["layers"])
    fig, axes = plt.subplots(1, layers, figsize=(5 * layers, 3.5), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        grid = np.array([h["layers"][layer]["grad_h"] for h in history], dtype=float)  # (E, T)
        image = ax.imshow(np.log10(np.maximum(grid, 1e-30)), aspect="auto", origin="lower", cmap="viridis")
        ax.set(title=f"layer {layer}: log10 ||dL/dh_t||", xlabel="step t", ylabel="measurement (epoch)")
        ax.set_yticks(range(len(epochs)), [str(e) for e in epochs]) if len(epochs) <= 12 else None
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    heat = folder / "grad_flow.png"
    fig.savefig(heat, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 4, figsize=(20, 3.5))
    for layer in range(layers):
        for gate in history[-1]["layers"][layer].get("gates", {}):
            share = [sum(h["layers"][layer]["gates"][gate].values()) for h in history]
            axes[3].plot(epochs, share, marker="o", label=f"layer {layer} {gate}")
        ratios = [h["layers"][layer]["grad_h"][0] / max(h["layers"][layer]["grad_h"][-1], 1e-30) for h in history]
        axes[0].semilogy(epochs, ratios, marker="o", label=f"layer {layer}")
        axes[2].plot(epochs, [h["layers"][layer]["saturation"] for h in history], marker="o", label=f"layer {layer}")
    for name in history[-1]["sigma_max"]:
        axes[1].plot(epochs, [h["sigma_max"][name] for h in history], marker="o", label=name)
    axes[0].set(title="||dL/dh_1|| / ||dL/dh_T||", xlabel="epoch")
    axes[1].set(title="largest singular value of W_hh", xlabel="epoch")
    axes[2].set(title="share of |h| > 0.99", xlabel="epoch")
    axes[3].set(title="gate saturation: share < 0.1 or > 0.9", xlabel="epoch")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    curves = folder / "diagnostics.png"
    fig.savefig(curves, dpi=90)
    plt.close(fig)
    return [heat, curves]


# ----------------------------------------------------------------------------- rnnlab diagnose


def diagnose(run_id: str, tracking_uri: str, samples: int) -> str:
    """The verdict of a past run, as lines of text: from its logged ``diag/*`` metrics (last
    measurement) or, when it has none, recomputed from its best checkpoint on the first ``samples``
    training sequences of its data (its logged ``config.yaml``). Errors are :class:`RnnlabError`."""
    from rnnlab.logged import find_run

    _, run, _ = find_run(run_id, tracking_uri, "diagnose")
    logged = {k: v for k, v in run.data.metrics.items() if k.startswith("diag/")}
    if "diag/grad_h_ratio/layer0" in logged:
        sentence = verdict(logged["diag/grad_h_ratio/layer0"], logged.get("diag/clip_rate"))[1]
        layers = sorted(k for k in logged if k.startswith("diag/grad_h_ratio/"))
        lines = [f"run {run_id[:8]}: {sentence} (logged at the last measurement)"]
        lines += [f"  {k.rsplit('/', 1)[1]}: ||dL/dh_1|| / ||dL/dh_T|| = {logged[k]:.3g}" for k in layers]
        lines += [
            f"  largest singular value of {k[len('diag/sigma_max/') :]}: {v:.3g}"
            for k, v in sorted(logged.items())
            if k.startswith("diag/sigma_max/")
        ]
        return "\n".join(lines)
    return "\n".join(_recompute(run_id, tracking_uri, samples))


def _recompute(run_id: str, tracking_uri: str, samples: int) -> list[str]:
    """Rebuild the run's model and data from its logged config (:func:`rnnlab.logged.load`: its best
    checkpoint, weights-only) and measure."""
    from rnnlab import logged
    from rnnlab.errors import RnnlabError

    loaded = logged.load(run_id, tracking_uri, command="diagnose")
    dm, model = loaded.dm, loaded.model
    train = dm.splits["train"]
    m = measure(model, tuple(t[:samples] for t in train))
    if not m["layers"]:
        raise RnnlabError(f"diagnose: the backbone of run {run_id[:8]} records no per-step states")
    ratios = [d["grad_h"][0] / d["grad_h"][-1] if d["grad_h"][-1] > 0 else float("nan") for d in m["layers"]]
    n = len(train[0][:samples])
    lines = [
        f"run {run_id[:8]}: {verdict(ratios[0], None)[1]} (recomputed from its best checkpoint on {n} "
        "training sequences: the run logged no diagnostics)"
    ]
    lines += [f"  layer{i}: ||dL/dh_1|| / ||dL/dh_T|| = {r:.3g}" for i, r in enumerate(ratios)]
    lines += [f"  largest singular value of {k}: {v:.3g}" for k, v in m["sigma_max"].items()]
    return lines
