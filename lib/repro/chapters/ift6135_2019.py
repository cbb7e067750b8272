"""ift6135-2019's own code: the VGG-style network of its Cats vs Dogs section, and the
evaluation of the report's conclusions that its claims cells call (bottom of the module).

The network (Cats vs Dogs, Figs. 13-16): the authors' ``ConvNetD_withDropOut_VGG`` is 3x3 convolutions (padding 1) with 64, 128, 256, 256, 512, 512, 512 channels, ReLU after
each, 2x2 max-pools after the 1st, 2nd, 4th and 6th, then Linear 8192 -> 4096 -> 4096 -> 2
with ReLU and dropout after the two hidden linear layers: 57,208,706 parameters on 64x64
RGB images. Weights are Xavier-uniform; biases keep PyTorch's default initialization, as
in the authors' code (they only re-initialized ``.weight``).

``width`` scales every channel and hidden size (rounded, at least 1), so smoke and quick
profiles can train the same architecture narrower on a CPU. The network's first module
(:class:`Standardize`) turns uint8 (or float) pixels in [0, 255] into normalized floats,
so data can stay uint8 on the device.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from .. import claims as cl, report as rp

VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512)
VGG_POOL_AFTER = (1, 2, 4, 6)  # 1-based indices of the convolutions followed by a 2x2 max-pool
VGG_HIDDEN = (4096, 4096)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Standardize(nn.Module):
    """x in [0, 255] (uint8 or float) -> (x / 255 - mean) / std, per channel."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def scaled(sizes: Sequence[int], width: float) -> list[int]:
    return [max(1, int(round(s * width))) for s in sizes]


def vgg_shapes(channels=VGG_CHANNELS, pool_after=VGG_POOL_AFTER, hidden=VGG_HIDDEN, *, width: float = 1.0,
               image_size: int = 64) -> tuple[list[int], list[int], int]:
    """(channels, hidden sizes, flattened feature size) after applying ``width``."""
    ch, hid = scaled(channels, width), scaled(hidden, width)
    side = image_size // 2 ** len(pool_after)
    return ch, hid, ch[-1] * side * side


def vgg(channels: Sequence[int] = VGG_CHANNELS, pool_after: Sequence[int] = VGG_POOL_AFTER,
        hidden: Sequence[int] = VGG_HIDDEN, *, n_classes: int = 2, in_channels: int = 3, image_size: int = 64,
        dropout: float = 0.4, width: float = 1.0, mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD, xavier: bool = True) -> nn.Sequential:
    """Build the VGG-style network (seed torch before calling for repeatable weights).

    dropout: probability of zeroing a hidden unit after each hidden linear layer (the
    authors' keep-probability 0.6 is dropout 0.4). mean/std: per-channel normalization of
    pixels scaled to [0, 1]; use std=(1, 1, 1) for zero-centring only.
    """
    ch, hid, flat = vgg_shapes(channels, pool_after, hidden, width=width, image_size=image_size)
    layers: list[nn.Module] = [Standardize(mean, std)]
    prev = in_channels
    for i, c in enumerate(ch, 1):
        layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU(inplace=True)]
        if i in pool_after:
            layers.append(nn.MaxPool2d(2, 2))
        prev = c
    layers.append(nn.Flatten())
    prev = flat
    for h in hid:
        layers += [nn.Linear(prev, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        prev = h
    layers.append(nn.Linear(prev, n_classes))
    net = nn.Sequential(*layers)
    if xavier:
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
    return net


def vgg_parameter_count(channels: Sequence[int] = VGG_CHANNELS, pool_after: Sequence[int] = VGG_POOL_AFTER,
                        hidden: Sequence[int] = VGG_HIDDEN, *, n_classes: int = 2, in_channels: int = 3,
                        image_size: int = 64, width: float = 1.0) -> int:
    """Weights and biases of :func:`vgg` with these settings, by formula (no model built)."""
    ch, hid, flat = vgg_shapes(channels, pool_after, hidden, width=width, image_size=image_size)
    total, prev = 0, in_channels
    for c in ch:
        total += prev * c * 9 + c
        prev = c
    prev = flat
    for h in [*hid, n_classes]:
        total += prev * h + h
        prev = h
    return total


# ----------------------------------------------------------------------------- the report's conclusions
# What the claims cells of the chapter evaluate; each function returns claims built by the named
# evaluators of repro.claims, so that the rule deciding a conclusion is stated on the claim.
FIG1_EPOCHS, PLATEAU_FROM, REPORT_MLP_EPOCHS = 10, 4, 60  # Fig. 1 shows 10 epochs; "plateauing after about 4 epochs"
_NOT_IN_CHAPTER = "the chapter trains only the final configuration and the unregularized network"


def epoch_curve(history: pd.DataFrame, config: str, split: str, metric: str = "accuracy") -> pd.Series:
    """One network's ``metric`` per epoch on ``split``, from a tidy MLP history (columns config, split, epoch)."""
    part = history[(history["config"] == config) & (history["split"] == split)]
    return part.set_index("epoch")[metric]


def input_blind_bounds(labels: torch.Tensor, n_classes: int = 10) -> tuple[float, float]:
    """The best training loss and accuracy of a network that ignores its input and can learn only its
    output biases: the entropy of the class frequencies (nats) and the most frequent class's share."""
    frequencies = labels.bincount(minlength=n_classes).double() / len(labels)
    seen = frequencies[frequencies > 0]
    return float(-(seen * seen.log()).sum()), float(frequencies.max())


def initialization_claims(history: pd.DataFrame, labels: torch.Tensor, epochs: int, *, ran_fig1: bool,
                          ran_report: bool, why_fig1: str, why_report: str, section: str) -> list:
    """The report's conclusions about initialization (section 1.a), on the init study's history.

    ``epochs``: the epochs this run trained; ``ran_fig1`` / ``ran_report``: whether it ran Fig. 1's
    10 epochs / the report's 60 on all the training images (``why_*`` say what it ran instead).
    Read at epoch 10 (Fig. 1) and from epoch 4 ("plateauing after about 4 epochs"), or at the last
    epoch of a shorter run.
    """
    fig1_at = float(min(FIG1_EPOCHS, epochs))
    plateau_at = float(min(PLATEAU_FROM, epochs))
    report_at = float(min(REPORT_MLP_EPOCHS, epochs))
    class_entropy, top_share = input_blind_bounds(labels)
    zero_loss = float(epoch_curve(history, "zero", "train", "loss")[fig1_at])
    zero_acc = float(epoch_curve(history, "zero", "train")[fig1_at])
    fig1_valid = {name: float(epoch_curve(history, name, "valid")[fig1_at]) for name in ("normal", "glorot")}
    gain = {(name, split): float(epoch_curve(history, name, split)[fig1_at] - epoch_curve(history, name, split)[plateau_at])
            for name in ("normal", "glorot") for split in ("valid", "test")}
    glorot_margin = rp.binomial_bound(0.9767, 10_000, digits=4).value  # 2 binomial sd at the report's 97.67% on 10,000 images
    keeps_improving = ("glorot_keeps_improving", "Glorot is not close to overfitting: its performance keeps increasing when "
                       "the network trains for 60 epochs", section)
    return [
        cl.claim_all("zero_does_not_learn", "With weights initialized to zero the loss and accuracy do not change and the "
                     "training accuracy is essentially random: the network does not learn", section,
                     {"training loss not below the entropy of the digit frequencies": zero_loss >= class_entropy - 1e-6,
                      "training accuracy not above the most frequent digit's share": zero_acc <= top_share + 1e-9},
                     "after epoch 10, training loss and accuracy no better than those of a network that learns only its "
                     "output biases (the entropy of the digit frequencies, the most frequent digit's share)",
                     evidence={"training loss": zero_loss, "digit-frequency entropy": class_entropy,
                               "training accuracy": zero_acc, "most frequent digit's share": top_share},
                     ran=ran_fig1, why=why_fig1),
        cl.claim_all("normal_glorot_learn", "Both Normal and Glorot initializations do fine", section,
                     {name: acc > 0.9 for name, acc in fig1_valid.items()},
                     "both above 0.9 validation accuracy after epoch 10 (about what a linear classifier reaches on MNIST)",
                     evidence={f"{name} validation accuracy": acc for name, acc in fig1_valid.items()},
                     ran=ran_fig1, why=why_fig1),
        cl.claim_all("normal_plateaus", "Normal initialization is close to overfitting: its validation and test curves "
                     "plateau after about 4 epochs, while Glorot's keep improving", section,
                     {f"{split}: Normal gains less than Glorot": gain[("normal", split)] < gain[("glorot", split)]
                      for split in ("valid", "test")} if fig1_at > plateau_at else {},
                     "from epoch 4 to epoch 10, Normal's validation and test accuracies rise less than Glorot's",
                     evidence={f"{name} {split} gain, epochs 4-10": v for (name, split), v in gain.items()},
                     ran=ran_fig1, why=why_fig1),
        cl.claim_order(*keeps_improving, {f"epoch {int(report_at)}": float(epoch_curve(history, "glorot", "valid")[report_at]),
                                          f"epoch {int(fig1_at)}": fig1_valid["glorot"]},
                       [f"epoch {int(report_at)}", f"epoch {int(fig1_at)}"], margin=glorot_margin,
                       ran=ran_report, why=why_report) if epochs > FIG1_EPOCHS else
        cl.not_run(*keeps_improving, why_report,
                   rule=f"Glorot's validation accuracy at epoch 60 above its epoch-10 value by more than {glorot_margin:g}"),
        cl.cannot_be_tested("local_optimum", "Normal initialization makes the gradients explode or vanish and gradient "
                            "descent 'falls' into a local optimum; Glorot helps the network bypass local optima and approach "
                            "the true global optimum", section,
                            "the global optimum of the training loss is unknown, and neither the report nor this run measures "
                            "the gradients layer by layer; the curves above show only how far each initialization gets"),
    ]


def long_run(history: pd.DataFrame, reported_pct: float, n_valid: int = 6_000) -> dict:
    """What a CNN's long run shows at its last epoch: how far the validation accuracy fell from its best
    epoch (points) and how far it may fall (2 binomial sd of an accuracy near ``reported_pct`` on
    ``n_valid`` images), validation over training loss (the training loss is the running mean over
    the epoch) and training minus validation accuracy (points)."""
    last = lambda split, metric: float(history[history["split"] == split][metric].iloc[-1])
    valid = 100 * history[history["split"] == "valid"]["accuracy"]
    return {"fall": float(valid.max() - valid.iloc[-1]),
            "fall allowed": rp.binomial_bound(reported_pct / 100, n_valid, scale=100, digits=2).value,
            "loss ratio": last("valid", "loss") / last("train (running)", "loss"),
            "accuracy gap": 100 * (last("train (running)", "accuracy") - last("valid", "accuracy"))}


def small_cnn_claims(long_runs: dict, *, small_test: float, mlp32_test: float, small_params: int, mlp32_params: int,
                     ran_small: bool, ran_long: bool, why_small: str, why_long: str, section: str) -> list:
    """The report's conclusions about the small CNN and the 100-epoch runs (section 2.d).

    ``long_runs``: CNN name -> :func:`long_run` of its history; ``small_test``: the small CNN's test
    accuracy (%) at epoch 30, ``mlp32_test`` the 32-32 MLP's at epoch 60; ``ran_*`` / ``why_*``: whether
    this run trained the report's settings for the small-CNN comparison / for the 100-epoch runs.
    """
    return [
        cl.claim_all("small_cnn_beats_small_mlp", "The 2,066-parameter CNN (97.1% test) is better than the 32-32 MLP "
                     "(95.93%), which has more than 10 times as many parameters", section,
                     {"the MLP has more than 10 times the parameters": mlp32_params > 10 * small_params,
                      "the small CNN's test accuracy is above the MLP's": small_test > mlp32_test},
                     "the small CNN's test accuracy at epoch 30 above the 32-32 MLP's at epoch 60, with under a tenth of "
                     "its parameters",
                     evidence={"small CNN test (%)": small_test, "32-32 MLP test (%)": mlp32_test,
                               "parameter ratio": mlp32_params / small_params}, ran=ran_small, why=why_small),
        cl.claim_all("no_overfitting_with_size", "The effects of overfitting are not very apparent as the number of "
                     "parameters grows: over 100 epochs neither CNN's validation accuracy falls", section,
                     {name: m["fall"] <= m["fall allowed"] for name, m in long_runs.items()},
                     "for both CNNs, the last epoch's validation accuracy within 2 binomial sd (6,000 images) of its best "
                     "epoch", evidence={f"{name}: fall from best (points)": m["fall"] for name, m in long_runs.items()},
                     ran=ran_long, why=why_long),
        cl.claim_all("loss_gap_accuracy_close", "Training and validation losses differ non-negligibly, yet training and "
                     "validation accuracies are surprisingly close, for both the over- and the under-parameterized CNN",
                     section,
                     {**{f"{name}: validation loss more than 10% above training loss": m["loss ratio"] > 1.1
                         for name, m in long_runs.items()},
                      **{f"{name}: accuracies within 1 point": abs(m["accuracy gap"]) <= 1.0 for name, m in long_runs.items()}},
                     "at the last epoch, for both CNNs: validation loss more than 1.1 times the training loss (running mean "
                     "over the epoch), and training and validation accuracy within 1 point",
                     evidence={**{f"{name}: loss ratio": m["loss ratio"] for name, m in long_runs.items()},
                               **{f"{name}: accuracy gap (points)": m["accuracy gap"] for name, m in long_runs.items()}},
                     ran=ran_long, why=why_long),
        cl.cannot_be_tested("mnist_too_simple", "MNIST's splits are so alike that learning one transfers to the other: "
                            "MNIST is too simple for a rigorous study of architectures (also section 1.b: it is learnt well "
                            "with few parameters)", section,
                            "an interpretation: no run of the report or of this chapter compares the splits' distributions or "
                            "a harder data set (dataset = 'fashion-mnist' runs this chapter's code on one, with no published "
                            "numbers to compare)"),
    ]


def lr_drop_checks(history: pd.DataFrame, watched: str, report_epoch: int = 60, patience: int = 10) -> tuple[dict, dict]:
    """The checks (label -> bool) and evidence of the report's "the loss drops for both the training and
    the validation set at epoch 60, when the learning rate was reduced", on the VGG's history: the
    first epoch trained at a reduced rate, read on the validation split the scheduler ``watched``."""
    curve = lambda split, metric: history[history["split"] == split].set_index("epoch")[metric]
    lr_by_epoch = curve(watched, "lr")
    lowered = lr_by_epoch[lr_by_epoch < lr_by_epoch.shift(1)]  # the epochs trained at a reduced learning rate
    if not len(lowered):
        return {"the learning rate is reduced": False}, {"epochs": int(history["epoch"].max())}
    drop_at = float(lowered.index[0])
    train_loss, valid_loss, valid_acc = curve("train (running)", "loss"), curve(watched, "loss"), curve(watched, "accuracy")
    checks = {"the learning rate is reduced": True,
              f"first reduction within the scheduler's patience ({patience} epochs) of epoch {report_epoch}":
                  abs(drop_at - report_epoch) <= patience,
              "the training loss falls in the first epoch at the reduced rate": train_loss[drop_at] < train_loss[drop_at - 1],
              "the validation loss falls in that epoch": valid_loss[drop_at] < valid_loss[drop_at - 1],
              "the final validation accuracy is above the one before the reduction": valid_acc.iloc[-1] > valid_acc[drop_at - 1]}
    evidence = {"first epoch at the reduced rate": int(drop_at),
                "training loss before, after": f"{train_loss[drop_at - 1]:.4f}, {train_loss[drop_at]:.4f}",
                "validation loss before, after": f"{valid_loss[drop_at - 1]:.4f}, {valid_loss[drop_at]:.4f}"}
    return checks, evidence


def other_attempts_not_run(section: str) -> list:
    """The report's conclusions about its other Cats vs Dogs runs (the rest of Fig. 15, a ResNet, a
    deeper VGG, more augmentation or normalization layers): no run of this chapter tests them."""
    return [
        cl.not_run("dropout_l2_too_strong", "Dropout 0.5 with a higher L2 penalizes the model too much: training and "
                   "validation errors are both higher", section, _NOT_IN_CHAPTER),
        cl.not_run("lower_l2_better", "Reducing L2 further to 2e-3 and 1e-3 lowers both the training and the validation "
                   "error and raises the accuracy", section, _NOT_IN_CHAPTER),
        cl.not_run("dropout04_lr1e3_slow", "Dropout 0.4 with learning rate 1e-3 learns very slowly and converges late",
                   section, _NOT_IN_CHAPTER),
        cl.not_run("final_combination_best", "Dropout 0.4 with learning rate 1e-2 and L2 1.5e-3 gives the best combination "
                   "of easy convergence and low generalization error", section,
                   _NOT_IN_CHAPTER + "; no other combination is trained"),
        cl.not_run("augmentation_helped", "Data augmentation helped the model learn", section,
                   "the ablation switches augmentation, dropout and L2 together; no run isolates augmentation"),
        cl.not_run("resnet_overfits", "A ResNet overfitted easily", section, "no ResNet is trained in this chapter"),
        cl.not_run("deeper_vgg_worse", "A deeper VGG did not learn well: training was very slow and the error no better",
                   section, "no deeper VGG is trained in this chapter"),
        cl.not_run("more_regularization_would_help", "More augmentation, or BatchNorm or LayerNorm, would have helped the "
                   "network generalize further", section,
                   "no variant with more augmentation or with normalization layers is trained"),
    ]
