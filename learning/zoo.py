"""The model zoo: the networks of the papers eventsim is built from, as data.

Every model is a plain-data config in :data:`MODELS` (dicts, lists, tuples,
strings and numbers only, so ``json.dumps`` takes any of them), and one
generic builder, :func:`build_network`, turns a config into an
:class:`eventsim.Network`. Input channels and fan-ins are never written in a
config: they follow from the input shape, layer by layer.

A config holds:

- ``"source"``: the paper and the table the network is taken from;
- ``"inputs"``: named input shapes ``(C, H, W)``, the first one the default;
- ``"neuron"``: the defaults of every spiking neuron layer and of the readout:
  ``threshold``, either ``tau`` (steps; lam = exp(-1/tau)) or ``leak``
  (lam; 1 gives IF neurons), ``reset`` ("hard" or "soft") and ``strict``;
  optionally ``synapse_tau`` (steps), a synaptic current in every spiking
  layer (current-based LIF; not in the readout);
- ``"kappa"``: the initialisation constant of :func:`init_lee2020` (2 for
  plain networks, 1 for residual ones, Lee et al. 2020 Sec. 3.4);
- ``"layers"``: the layer entries below;
- ``"notes"``: the choices made where the paper is ambiguous.

Layer entries
-------------
An entry is a tuple (or list) whose first item is its kind, then its
positional values, then optionally a dict of options:

=========================================  =============================================================
``("conv", out, k, {stride, padding})``    :class:`~eventsim.layers.Conv2d`, k x k, no bias; stride 1
                                           and padding 0 unless given
``("fc", out)``                            :class:`~eventsim.layers.Linear`, no bias
``("lif",)``                               the model's neuron (LIF, or IF when ``leak`` is 1)
``("readout", {tau | leak})``              :class:`~eventsim.layers.Readout` with the model's leak,
                                           or with its own
``("rec",)``                               :class:`~eventsim.layers.Recurrent`: the model's neuron on a
                                           flat input, its own spikes of the step before fed back by a
                                           square :class:`~eventsim.layers.Linear`
``("spool", k, {threshold_ratio})``        :class:`~eventsim.layers.SpikingAvgPool` (Lee's spiking
                                           average pooling, ratio 0.75 unless given)
``("avgpool", k, {stride})``               :class:`~eventsim.layers.AvgPool` (linear, no neuron)
``("maxpool", k, {stride})``               :class:`~eventsim.layers.MaxPool`
``("dropout", p)``                         :class:`~eventsim.layers.Dropout`
``("flatten",)``                           :class:`~eventsim.layers.Flatten`
``("identity", stride)``                   :class:`~eventsim.layers.Identity` (skip paths; stride 1
                                           unless given)
``("res", {"main": [...], "skip": e})``    :class:`~eventsim.layers.Residual`: ``main`` is a list of
                                           entries ending in a synapse (conv-lif-conv, with dropout
                                           where the paper has it); ``skip`` is one entry,
                                           ``("identity",)`` (the default), ``("identity", 2)`` or a
                                           1x1 ``("conv", out, 1, {"stride": s})``; both feed one
                                           neuron layer of the model's defaults
=========================================  =============================================================

Models
------
- ``lee2020-lenet5``, ``lee2020-vgg7``, ``lee2020-resnet7``,
  ``lee2020-vgg9``, ``lee2020-resnet9``, ``lee2020-resnet11``: Lee, Sarwar,
  Panda, Srinivasan, Roy, "Enabling Spike-based Backpropagation for Training
  Deep Neural Network Architectures", Front. Neurosci. 14:119 (2020),
  Tables 4 and 5, with padding, dropout and the ResNet11 skips of the
  authors' code (github.com/chan8972/Enabling_Spikebased_Backpropagation);
  LeNet5 as reprinted in Tsoukas 2023 (diploma thesis, Univ. of Thessaly),
  Table 4.2.
- ``syed2021-4layer``, ``syed2021-vgg6``, ``syed2021-vgg8``,
  ``syed2021-vgg11``, ``syed2021-vgg13``, ``syed2021-resnet6``: Syed, Kakani,
  Cui, Kim, "Exploring Optimized Spiking Neural Network Architectures for
  Classification Tasks on Embedded Platforms", Sensors 21(9):3240 (2021),
  Tables 3 and 4.
- ``ngu2022-mnist``: Ngu and Lee, "Effective Conversion of a Convolutional
  Neural Network into a Spiking Neural Network for Image Recognition Tasks",
  Appl. Sci. 12 (2022), Fig. 5 (``28x28-12c5-2ap-64c5-2ap-10o``).
- ``shd-cubalif-rnn``, ``dvsgesture-cnn``: eventsim's models for the Spiking
  Heidelberg Digits and DVS Gesture (``eventsim train shd`` / ``dvsgesture``),
  sized for a CPU; their notes say where their choices come from.

The ANN MAC counts of VGG9 (194,717,696), ResNet9 (299,575,296), ResNet11
(607,856,640) and the MNIST LeNet (5,784,000) derived in the Lee et al.
extraction (Sec. 7) are reproduced exactly by these builds
(``tests/test_zoo.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np

from eventsim.errors import LayerError, OptionError, check_choice
from eventsim.layers import (
    IF,
    LIF,
    AvgPool,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Layer,
    Linear,
    MaxPool,
    Readout,
    Recurrent,
    Residual,
    SpikingAvgPool,
    Weighted,
)
from eventsim.learning.init import init_lee2020
from eventsim.network import Network
from eventsim.norm import CurrentNorm

# ------------------------------------------------------------------ the models
_LEE_SOURCE = "Lee, Sarwar, Panda, Srinivasan, Roy 2020, Front. Neurosci. 14:119"
_LEE_NEURON = {"threshold": 1.0, "tau": 100.0, "reset": "hard", "strict": True}
_LEE_NOTES = [
    ("Neurons (Table 2, Algorithm 1): LIF, threshold 1, tau = 100 steps (lam = exp(-1/100); the authors' "
    "code uses lam = 0.99), hard reset to 0, strict '>'; output layer never fires, readout U[T]/T with the "
    "same leak; spiking average pooling 2x2, threshold 0.75 of the window weight, no leak."),
    "No bias and no batch norm anywhere (equations and code).",
]
_LEE_CODE_DROPOUT = (
    "Dropout as in the authors' code: one mask per sample on the spikes of every hidden LIF layer (conv and "
    "fc), before pooling; none on the input, the pooling neurons or the output."
)
_SYED_SOURCE = "Syed, Kakani, Cui, Kim 2021, Sensors 21(9):3240"
_SYED_NEURON = {"threshold": 1.0, "tau": 10.0, "reset": "hard", "strict": True}
_SYED_NOTES = [
    ("Neurons (Sec. 2.1, Table 1): LIF with tau_m = 10 read as steps with the exponential discretisation "
    "(lam = exp(-1/10), input not scaled by 1/tau); threshold 1 (Table 1 also lists 0.5; use threshold=0.5 "
    "for that setting); hard reset to 0, strict '>' ('greater than')."),
    "Padding 1 on every 3x3 conv (not stated; implied by VGG-6's 4096 = 64*8*8), no bias, no batch norm.",
    ("Pooling: average pooling followed by a thresholded spiking stage (Sec. 2.2); its threshold is not given, "
    "so Lee et al.'s spiking pooling (0.75 of the window weight, IF) is used, whose rationale the paper "
    "repeats."),
    ("Output: the only readout the paper defines is the output spike count O (eq. 7), so the last layer is a "
    "spiking LIF layer and the prediction is the argmax of its counts (train with SpikeCountMSE)."),
    ("Dropout (Sec. 3.3, p = 0.2-0.25, one mask held over all steps) after every hidden LIF layer, before "
    "pooling, as in Lee et al.'s code which the paper cites for it; FC placement is not stated."),
]


#: options of the 3x3 convs: "same" padding, and stride 2 where a conv replaces a pool
_PAD1 = {"padding": 1}
_DOWN = {"stride": 2, "padding": 1}

MODELS: dict[str, dict[str, Any]] = {
    "lee2020-lenet5": {
        "source": f"{_LEE_SOURCE}, Table 4 (4-layer 'LeNet', MNIST and N-MNIST); Tsoukas 2023 thesis, Table 4.2",
        "inputs": {"nmnist": (2, 34, 34), "mnist": (1, 28, 28)},
        "neuron": _LEE_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 20, 5, {"padding": 2}), ("lif",), ("spool", 2),
            ("conv", 50, 5, {"padding": 2}), ("lif",), ("spool", 2),
            ("flatten",), ("fc", 200), ("lif",), ("fc", 10), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            ("Padding 2 on the 5x5 convs (A15; authors' mnist_LeNet.py): MNIST 28-28-14-14-7, FC fan-in "
            "50*7*7 = 2450; N-MNIST 34-34-17-17-8 (floor), FC fan-in 50*8*8 = 3200."),
            ("N-MNIST: two input channels (ON, OFF polarity), so the first conv is 2x5x5 (the table prints the "
            "MNIST 1x5x5)."),
            ("Weights: 517,500 on MNIST and 668,000 on N-MNIST (1,000 + 25,000 + 640,000 + 2,000), the thesis "
            "extraction's figure; the extra 150,000 against MNIST are the FC's 3200 - 2450 = 750 inputs x 200."),
            "No dropout (the MNIST script uses none).",
        ],
    },
    "lee2020-vgg7": {
        "source": f"{_LEE_SOURCE}, Table 4 (VGG7, SVHN)",
        "inputs": {"svhn": (3, 32, 32)},
        "neuron": _LEE_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 64, 3, _DOWN), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 128, 3, _DOWN), ("lif",), ("dropout", 0.2),
            ("conv", 128, 3, _DOWN), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.2), ("fc", 10), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            ("A16: the table is built as printed (the thesis reprints the same strides): three stride-2 convs "
            "and two pools take 32x32 to 32-16-8-8-4-2-1, so the FC sees only 128*1*1 = 128 inputs. This "
            "bottleneck may be a typo in the paper, but any other stride pattern would be a guess; there is "
            "no code for VGG7."),
            "Padding 1 on every 3x3 conv (the authors' CIFAR code).",
            "Dropout p = 0.2 as in the VGG9 code (no code exists for VGG7). " + _LEE_CODE_DROPOUT,
        ],
    },
    "lee2020-resnet7": {
        "source": f"{_LEE_SOURCE}, Table 4 (ResNet7, SVHN)",
        "inputs": {"svhn": (3, 32, 32)},
        "neuron": _LEE_NEURON,
        "kappa": 1.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.25), ("spool", 2),
            ("res", {"main": [("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 128, 3, _DOWN)],
                     "skip": ("conv", 128, 1, {"stride": 2})}), ("dropout", 0.25),
            ("res", {"main": [("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 256, 3, _DOWN)],
                     "skip": ("conv", 256, 1, {"stride": 2})}), ("dropout", 0.25),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.25), ("fc", 10), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            "Sizes 32-16 (pool)-8-4, FC fan-in 256*4*4 = 4096; padding 1 on the 3x3 convs.",
            ("Residual blocks (Sec. 2.2.2): conv-LIF-conv, the 1x1 stride-2 skip conv of the table adds its "
            "current into the block's second LIF."),
            ("Dropout p = 0.25 placed as in the ResNet11 code (no code exists for ResNet7): after the stem LIF, "
            "the LIF inside each block, each block's output (which feeds the next block's main path and skip) "
            "and the hidden FC."),
        ],
    },
    "lee2020-vgg9": {
        "source": f"{_LEE_SOURCE}, Table 5 (VGG9, CIFAR-10); authors' cifar10_VGG9.py",
        "inputs": {"cifar10": (3, 32, 32)},
        "neuron": _LEE_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.2), ("fc", 10), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            "Sizes 32-16-8-4, FC fan-in 256*4*4 = 4096; padding 1 on every 3x3 conv (code).",
            "Dropout p = 0.2 (code). " + _LEE_CODE_DROPOUT,
        ],
    },
    "lee2020-resnet9": {
        "source": f"{_LEE_SOURCE}, Table 5 (ResNet9, CIFAR-10)",
        "inputs": {"cifar10": (3, 32, 32)},
        "neuron": _LEE_NEURON,
        "kappa": 1.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.25), ("spool", 2),
            ("res", {"main": [("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 128, 3, _PAD1)],
                     "skip": ("conv", 128, 1)}), ("dropout", 0.25),
            ("res", {"main": [("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 256, 3, _DOWN)],
                     "skip": ("conv", 256, 1, {"stride": 2})}), ("dropout", 0.25),
            ("res", {"main": [("conv", 512, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 512, 3, _DOWN)],
                     "skip": ("conv", 512, 1, {"stride": 2})}), ("dropout", 0.25),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.25), ("fc", 10), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            "Sizes 32-16 (pool)-16-8-4, FC fan-in 512*4*4 = 8192; padding 1 on the 3x3 convs.",
            "Every skip is the 1x1 conv of the table (block 2's 'skip connection' row has a 128x1x1 kernel).",
            ("Dropout p = 0.25 placed as in the ResNet11 code (no code exists for ResNet9): after the stem LIF, "
            "the LIF inside each block, each block's output and the hidden FC."),
        ],
    },
    "lee2020-resnet11": {
        "source": f"{_LEE_SOURCE}, Table 5 (ResNet11, CIFAR-10); authors' cifar10_ResNet11.py",
        "inputs": {"cifar10": (3, 32, 32)},
        "neuron": _LEE_NEURON,
        "kappa": 1.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.25), ("spool", 2),
            ("res", {"main": [("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 128, 3, _PAD1)],
                     "skip": ("conv", 128, 1)}), ("dropout", 0.25),
            ("res", {"main": [("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 256, 3, _DOWN)],
                     "skip": ("conv", 256, 1, {"stride": 2})}), ("dropout", 0.25),
            ("res", {"main": [("conv", 512, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 512, 3, _PAD1)],
                     "skip": ("conv", 512, 1)}), ("dropout", 0.25),
            ("res", {"main": [("conv", 512, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 512, 3, _DOWN)],
                     "skip": ("identity", 2)}), ("dropout", 0.25),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.25), ("fc", 10), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            "Sizes 32-16 (pool)-16-8-8-4, FC fan-in 512*4*4 = 8192; padding 1 on the 3x3 convs (code).",
            ("A17, as in the code: block 3's skip is a 1x1 conv 256->512 (the table's '512x1x1' cannot take a "
            "256-map input); block 4's skip is the parameter-free stride-2 identity (AvgPool2d(1, stride 2)) "
            "instead of the table's 1x1 conv 512->512, as the paper's own rule (identity when the map counts "
            "are equal) says. It costs no MACs."),
            ("Dropout p = 0.25 (code): after the stem LIF (before the pool), the LIF inside each block, each "
            "block's output (the masked spikes feed both paths of the next block) and the hidden FC."),
        ],
    },
    "syed2021-4layer": {
        "source": f"{_SYED_SOURCE}, Table 3 (four-layer model, MNIST)",
        "inputs": {"mnist": (1, 28, 28)},
        "neuron": _SYED_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 32, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 200), ("lif",), ("dropout", 0.2), ("fc", 10), ("lif",),
        ],
        "notes": _SYED_NOTES + ["Sizes 28-14-7, FC fan-in 64*7*7 = 3136."],
    },
    "syed2021-vgg6": {
        "source": f"{_SYED_SOURCE}, Table 3 (VGG-6, KITTI crops, 6 classes)",
        "inputs": {"kitti": (1, 32, 32)},
        "neuron": _SYED_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 32, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 32, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 4096), ("lif",), ("dropout", 0.2), ("fc", 6), ("lif",),
        ],
        "notes": _SYED_NOTES + [
            "Grayscale 32x32 input (the first conv is 1x3x3 in Table 3).",
            ("'FC 4096' is read literally as a hidden FC layer of 4096 neurons ('four convolutional layers and "
            "two fully connected layers'); it equals the flatten size 64*8*8, so FC 4096 -> 4096 -> 6."),
        ],
    },
    "syed2021-vgg8": {
        "source": f"{_SYED_SOURCE}, Table 4 (VGG-8, SVHN)",
        "inputs": {"svhn": (3, 32, 32)},
        "neuron": _SYED_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.2), ("fc", 10), ("lif",),
        ],
        "notes": _SYED_NOTES + [
            "The first conv takes the 3 RGB channels (the table prints 32x3x3, a typo).",
            "Convs stride 1, pools stride 2 (the only reading of the stride column); FC fan-in 256*4*4 = 4096.",
        ],
    },
    "syed2021-vgg11": {
        "source": f"{_SYED_SOURCE}, Table 4 (VGG-11, CIFAR-10)",
        "inputs": {"cifar10": (3, 32, 32)},
        "neuron": _SYED_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 512, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.2),
            ("fc", 1024), ("lif",), ("dropout", 0.2), ("fc", 10), ("lif",),
        ],
        "notes": _SYED_NOTES + ["8 convs + 3 FC as the table gives them; FC fan-in 512*2*2 = 2048."],
    },
    "syed2021-vgg13": {
        "source": f"{_SYED_SOURCE}, Table 4 (VGG-13, CIFAR-10)",
        "inputs": {"cifar10": (3, 32, 32)},
        "neuron": _SYED_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 256, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("conv", 512, 3, _PAD1), ("lif",), ("dropout", 0.2),
            ("conv", 512, 3, _PAD1), ("lif",), ("dropout", 0.2), ("spool", 2),
            ("flatten",), ("fc", 1024), ("lif",), ("dropout", 0.2),
            ("fc", 1024), ("lif",), ("dropout", 0.2), ("fc", 10), ("lif",),
        ],
        "notes": _SYED_NOTES + [
            ("Channels from the filter column's in-channel chain, 64-64 | 128-128 | 256-256 | 256-256 | 512-512, "
            "which contradicts the printed output-map column (three 64s, three 256s); five pools take 32x32 "
            "to 1x1, FC fan-in 512."),
        ],
    },
    "syed2021-resnet6": {
        "source": f"{_SYED_SOURCE}, Table 3 (ResNet-6, Korean license plates, 50 classes)",
        "inputs": {"plates": (1, 32, 32)},
        "neuron": _SYED_NEURON,
        "kappa": 1.0,
        "layers": [
            ("conv", 32, 3, _PAD1), ("lif",), ("dropout", 0.25), ("spool", 2),
            ("res", {"main": [("conv", 64, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 64, 3, _DOWN)],
                     "skip": ("conv", 64, 1, {"stride": 2})}), ("dropout", 0.25),
            ("res", {"main": [("conv", 128, 3, _PAD1), ("lif",), ("dropout", 0.25), ("conv", 128, 3, _DOWN)],
                     "skip": ("conv", 128, 1, {"stride": 2})}), ("dropout", 0.25),
            ("flatten",), ("fc", 50), ("lif",),
        ],
        "notes": _SYED_NOTES + [
            "Skips are 1x1 convs, as the text says ('1 x 1 convolutional kernels'); Table 3 prints 3x3.",
            ("Block 1 as printed is inconsistent (main path strides 1 and 1, skip stride 2). The skip's stride 2 "
            "is kept and the block's second conv made stride 2, which makes ResNet-6 Lee et al.'s ResNet7 with "
            "half the channels and no hidden FC: 32-16 (pool)-8-4, FC fan-in 128*4*4 = 2048. The other "
            "consistent reading (block-1 skip stride 1) gives FC fan-in 128*8*8 = 8192."),
            ("Dropout p = 0.25 placed as in Lee et al.'s ResNet11 code; kappa 1 ('u = 1 for residual "
            "connection in ResNet-6')."),
        ],
    },
    "ngu2022-mnist": {
        "source": "Ngu, Lee 2022, Appl. Sci. 12, Fig. 5 (28x28-12c5-2ap-64c5-2ap-10o, MNIST)",
        "inputs": {"mnist": (1, 28, 28)},
        "neuron": {"threshold": 1.0, "leak": 1.0, "reset": "soft", "strict": False},
        "kappa": 2.0,
        "layers": [
            ("conv", 12, 5), ("lif",), ("avgpool", 2),
            ("conv", 64, 5), ("lif",), ("avgpool", 2),
            ("flatten",), ("fc", 10), ("readout",),
        ],
        "notes": [
            ("Neurons (eq. 1): IF, soft reset (subtract the threshold), fire on V >= theta (strict=False), "
            "no leak; the output layer is a non-spiking integrator (threshold +inf), prediction its argmax."),
            ("Thresholds are placeholders (1): the paper sets one per output channel by calibration on the "
            "training set (max input current, layer by layer), which depends on T; set them after building."),
            "Pooling: linear 2x2 average pooling of the spike maps, no neuron (code: nn.AvgPool2d on spikes).",
            "Stride 1, padding 0, no bias (code): 28-24-12-8-4, FC fan-in 64*4*4 = 1024.",
            "Input: analog pixels as constant currents (eventsim.encoders.direct).",
            ("Weights come from a trained ReLU CNN; kappa 2 only gives a random starting point. The CNN's "
            "spatial dropout (p = 0.5) is a CNN training device and is not part of the SNN."),
        ],
    },
    "shd-cubalif-rnn": {
        "source": ("eventsim, for the Spiking Heidelberg Digits (Cramer, Stradmann, Schemmel, Zenke 2022, IEEE TNNLS "
                   "33:2744): a recurrent current-based LIF network, the kind those authors train on SHD"),
        "inputs": {"shd": (1, 1, 700)},
        "neuron": {"threshold": 1.0, "tau": 20.0, "synapse_tau": 5.0, "reset": "hard", "strict": True},
        "kappa": 2.0,
        "layers": [("flatten",), ("fc", 256), ("rec",), ("fc", 20), ("readout", {"leak": 1.0})],
        "notes": [
            ("700 channels -> fc 256 -> recurrent CubaLIF 256 (fc 256 -> 256 from its own spikes of the step "
            "before) -> fc 20 -> readout: the sizes and time constants of eventsim bench's recurrent workload "
            "(tau_syn = 5 steps, tau_mem = 20 steps), hard reset to 0, threshold 1, no bias."),
            ("Input: SHD binned into T = 100 steps of 14 ms over [0, 1.4 s) (eventsim.datasets.SHD.binned), "
            "shape (1, 1, 700): tonic's single polarity channel of a 1-D sensor, flattened by the first layer."),
            ("Readout: a non-leaking integrator (leak 1), so U[T] / T is the mean output current over all "
            "steps and every part of the utterance counts alike; train with bptt (a recurrent layer has no "
            "lee2020 gradient) and cross-entropy."),
            "kappa 2 (a plain network): weights N(0, 2 / fan_in), the recurrent ones included.",
        ],
    },
    "dvsgesture-cnn": {
        "source": ("eventsim, for DVS Gesture (Amir et al. 2017, CVPR): a small convolutional network with Lee et "
                   "al. 2020's neurons and spiking pooling"),
        "inputs": {"dvsgesture": (2, 32, 32)},
        "neuron": _LEE_NEURON,
        "kappa": 2.0,
        "layers": [
            ("conv", 16, 3, _PAD1), ("lif",), ("spool", 2),
            ("conv", 32, 3, _PAD1), ("lif",), ("spool", 2),
            ("conv", 64, 3, _PAD1), ("lif",), ("spool", 2),
            ("flatten",), ("fc", 128), ("lif",), ("fc", 11), ("readout",),
        ],
        "notes": _LEE_NOTES + [
            ("Input: the 128 x 128 sensor pooled 4 x 4 into 32 x 32 before binning (pixel (x, y) -> "
            "(x // 4, y // 4), tonic's Downsample(spatial_factor=0.25)), two polarity channels, T = 20 steps "
            "over the whole recording, binary: pooling the events, not the binned frames, keeps the input "
            "events 16 times fewer at the full sensor's timing."),
            "Sizes 32-16-8-4, FC fan-in 64*4*4 = 1024; padding 1 on the 3x3 convs.",
        ],
    },
}


# ----------------------------------------------------------------- the builder
_NEURON_KEYS = {"threshold", "tau", "leak", "reset", "strict", "synapse_tau"}
#: kind -> (number of positional values, allowed options)
_GRAMMAR: dict[str, tuple[tuple[int, ...], frozenset[str]]] = {
    "conv": ((2,), frozenset({"stride", "padding"})),
    "fc": ((1,), frozenset()),
    "lif": ((0,), frozenset()),
    "readout": ((0,), frozenset({"tau", "leak"})),
    "rec": ((0,), frozenset()),
    "spool": ((1,), frozenset({"threshold_ratio"})),
    "avgpool": ((1,), frozenset({"stride"})),
    "maxpool": ((1,), frozenset({"stride"})),
    "dropout": ((1,), frozenset()),
    "flatten": ((0,), frozenset()),
    "identity": ((0, 1), frozenset()),
    "res": ((0,), frozenset({"main", "skip"})),
}


def _parse(entry: object) -> tuple[str, list, dict]:
    """Split an entry into kind, positional values and options, checking it against the grammar."""
    if not isinstance(entry, (list, tuple)) or not entry or not isinstance(entry[0], str):
        raise OptionError(f"a layer entry must be a tuple or list starting with its kind, got {entry!r}")
    kind, *values = entry
    check_choice("layer kind", kind, tuple(_GRAMMAR))
    options = values.pop() if values and isinstance(values[-1], dict) else {}
    counts, allowed = _GRAMMAR[kind]
    if len(values) not in counts:
        raise OptionError(f"layer entry {entry!r}: {kind!r} takes {' or '.join(map(str, counts))} values")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise OptionError(f"layer entry {entry!r}: unknown options {unknown}; {kind!r} takes {sorted(allowed)}")
    return kind, values, options


class _Builder:
    """Turns layer entries into layers, following the shape to infer input sizes."""

    def __init__(self, neuron: dict, dropout: float | None, width: float = 1.0, classifier: object = None,
                 norm: str | None = None) -> None:
        self.neuron = neuron
        self.dropout = dropout
        self.norm = norm
        self.width = width
        self.classifier = classifier  # the last fc entry: its size is the number of classes, never scaled

    def scaled(self, size: int) -> int:
        """A layer size times the width multiplier, at least 1."""
        return max(1, round(size * self.width))

    def spiking(self) -> LIF:
        n = self.neuron
        norm = None if self.norm is None else CurrentNorm(self.norm)
        synapse = {"synapse_tau": n["synapse_tau"]} if "synapse_tau" in n else {}
        if "tau" in n:
            return LIF(n["threshold"], tau=n["tau"], reset=n["reset"], strict=n["strict"], norm=norm, **synapse)
        if n["leak"] == 1.0:
            return IF(n["threshold"], reset=n["reset"], strict=n["strict"], norm=norm, **synapse)
        return LIF(n["threshold"], leak=n["leak"], reset=n["reset"], strict=n["strict"], norm=norm, **synapse)

    def layers(self, entries: Sequence, shape: tuple[int, ...]) -> tuple[list[Layer], tuple[int, ...]]:
        out: list[Layer] = []
        for entry in entries:
            kind, values, options = _parse(entry)
            if kind == "res":
                layer, shape = self.residual(entry, options, shape)
            elif kind == "dropout" and self.dropout == 0.0:
                continue  # dropout switched off: no layer, so the network is the inference one
            else:
                layer = self.layer(entry, kind, values, options, shape)
                try:
                    shape = layer.output_shape(shape)
                except LayerError as exc:  # the network has not named the layer yet: name its entry
                    raise LayerError(layer, f"{exc.problem} (layer entry {entry!r})") from None
            out.append(layer)
        return out, shape

    def layer(self, entry, kind: str, values: list, options: dict, shape: tuple[int, ...]) -> Layer:
        if kind == "conv":
            if len(shape) != 3:
                raise OptionError(f"layer entry {entry!r} needs a (C, H, W) input, got shape {shape}")
            return Conv2d(shape[0], self.scaled(values[0]), values[1], **options)
        if kind == "fc":
            if len(shape) != 1:
                raise OptionError(f"layer entry {entry!r} needs a flat input, got shape {shape}; add ('flatten',)")
            return Linear(shape[0], values[0] if entry is self.classifier else self.scaled(values[0]))
        if kind == "lif":
            return self.spiking()
        if kind == "readout":
            n = self.neuron
            if options:
                return Readout(**options)
            return Readout(tau=n["tau"]) if "tau" in n else Readout(leak=n["leak"])
        if kind == "rec":
            if len(shape) != 1:
                raise OptionError(f"layer entry {entry!r} needs a flat input, got shape {shape}; add ('flatten',)")
            return Recurrent(self.spiking(), Linear(shape[0], shape[0]))
        if kind == "spool":
            return SpikingAvgPool(values[0], **options)
        if kind == "avgpool":
            return AvgPool(values[0], **options)
        if kind == "maxpool":
            return MaxPool(values[0], **options)
        if kind == "dropout":
            return Dropout(values[0] if self.dropout is None else self.dropout)
        if kind == "flatten":
            return Flatten()
        return Identity(*values)

    def residual(self, entry, options: dict, shape: tuple[int, ...]) -> tuple[Residual, tuple[int, ...]]:
        if "main" not in options:
            raise OptionError(f"layer entry {entry!r}: a residual block needs its 'main' path")
        main, out = self.layers(options["main"], shape)
        skip_entry = options.get("skip", ("identity",))
        kind, values, skip_options = _parse(skip_entry)
        if kind not in ("identity", "conv"):
            raise OptionError(f"layer entry {entry!r}: the skip must be an 'identity' or a 'conv', got {kind!r}")
        skip = self.layer(skip_entry, kind, values, skip_options, shape)
        return Residual(main, self.spiking(), skip=skip), out


def _neuron(config: dict, tau: float | None, threshold: float | None, leak: float | None = None) -> dict:
    """The model's neuron defaults with the overrides applied."""
    neuron = dict(config["neuron"])
    unknown = sorted(set(neuron) - _NEURON_KEYS)
    if unknown or ("tau" in neuron) == ("leak" in neuron):
        raise OptionError(f"neuron defaults {neuron!r} must give threshold, reset, strict and one of tau or leak")
    if tau is not None and leak is not None:
        raise OptionError(f"give tau or leak, not both (tau={tau!r}, leak={leak!r})")
    if tau is not None:
        neuron.pop("leak", None)
        neuron["tau"] = tau
    if leak is not None:
        if not 0.0 <= leak <= 1.0:
            raise OptionError(f"leak must be in [0, 1], got {leak!r}")
        neuron.pop("tau", None)
        neuron["leak"] = float(leak)
    if threshold is not None:
        neuron["threshold"] = threshold
    return neuron


def _has_dropout(entries: Sequence) -> bool:
    for entry in entries:
        kind, _, options = _parse(entry)
        if kind == "dropout" or (kind == "res" and _has_dropout(options.get("main", []))):
            return True
    return False


def input_shape(config: dict, input: str | Sequence[int] | None = None) -> tuple[int, ...]:
    """The input shape a config is built for: a named input of ``config["inputs"]``, or a shape.

    ``None`` gives the first named input.
    """
    inputs = config["inputs"]
    if input is None:
        return tuple(next(iter(inputs.values())))
    if isinstance(input, str):
        check_choice("input", input, tuple(inputs))
        return tuple(inputs[input])
    shape = tuple(input)
    if not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise OptionError(f"input must be a name or a shape of positive ints, got {input!r}")
    return tuple(int(s) for s in shape)


def build_network(
    config: dict,
    *,
    input: str | Sequence[int] | None = None,
    dtype: object = np.float32,
    rng: np.random.Generator | None = None,
    tau: float | None = None,
    leak: float | None = None,
    threshold: float | None = None,
    dropout: float | None = None,
    width: float = 1.0,
    norm: str | None = None,
) -> Network:
    """Build the network a config describes (the grammar is in the module docstring).

    Parameters
    ----------
    config : dict
        A model config as in :data:`MODELS` (tuples or lists, e.g. after a
        JSON round trip).
    input : str or tuple of int, optional
        A name of ``config["inputs"]`` or a shape ``(C, H, W)``; default the
        first named input.
    dtype : float32 (default) or float64
        The network's dtype.
    rng : numpy Generator, optional
        If given, weights are drawn by :func:`init_lee2020` with the config's
        kappa; otherwise they are left unset (None).
    tau, threshold : float, optional
        Override the model's neuron defaults (all spiking layers and residual
        neurons; ``tau`` also the readout's leak). ``tau`` replaces a ``leak``
        default, so an IF model becomes LIF. Spiking pooling keeps its own
        threshold ratio.
    leak : float, optional
        Replaces the neuron defaults' ``tau`` or ``leak`` by this per-step
        factor (1: IF neurons, as Ledinauskas et al. 2020 use; the readout too).
    dropout : float, optional
        Replaces p of every dropout layer; 0 builds none.
    width : float
        Multiplies the output channels of every convolution and the size of
        every hidden fully connected layer (rounded, at least 1); the last
        fully connected layer keeps its size, the number of classes. Narrow
        versions of the deep models train on a CPU.
    norm : {"batch_time", "batch"}, optional
        Give every spiking neuron layer (residual blocks' included; not the
        readout, not spiking pooling) an input-current batch norm with these
        statistics (:class:`eventsim.norm.CurrentNorm`, Ledinauskas et al.
        2020, Sec. 2.6).

    Raises
    ------
    OptionError
        An unknown input name, a malformed entry, or ``dropout > 0`` for a
        model with no dropout layers.
    LayerError
        A layer that does not fit its input (e.g. an input shape the model
        cannot take).
    """
    shape = input_shape(config, input)
    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise OptionError(f"dropout must be in [0, 1), got {dropout!r}")
        if dropout > 0.0 and not _has_dropout(config["layers"]):
            raise OptionError("this model has no dropout layers to set p of; dropout can only be 0 for it")
    if not (isinstance(width, (int, float)) and np.isfinite(width) and width > 0):
        raise OptionError(f"width must be a positive number, got {width!r}")
    fcs = [entry for entry in config["layers"] if _parse(entry)[0] == "fc"]
    builder = _Builder(_neuron(config, tau, threshold, leak), dropout, float(width), fcs[-1] if fcs else None, norm)
    layers, _ = builder.layers(config["layers"], shape)
    network = Network(layers, shape, dtype)
    if rng is not None:
        init_lee2020(network, rng, kappa=config["kappa"])
    return network


def model_config(name: str) -> dict:
    """The config of a zoo model; :class:`OptionError` listing the models for an unknown name."""
    check_choice("model", name, tuple(MODELS))
    return MODELS[name]


def build_model(
    name: str,
    *,
    input: str | Sequence[int] | None = None,
    dtype: object = np.float32,
    rng: np.random.Generator | None = None,
    tau: float | None = None,
    leak: float | None = None,
    threshold: float | None = None,
    dropout: float | None = None,
    width: float = 1.0,
    norm: str | None = None,
) -> Network:
    """Build the zoo model ``name``; see :func:`build_network` for the parameters.

    >>> net = build_model("lee2020-lenet5", input="mnist", rng=np.random.default_rng(0))
    >>> net.shapes["fc1"][0]
    (2450,)
    """
    return build_network(model_config(name), input=input, dtype=dtype, rng=rng, tau=tau, leak=leak,
                         threshold=threshold, dropout=dropout, width=width, norm=norm)


# ------------------------------------------------------------------- describe
def _neurons(layer: Layer, out_shape: tuple[int, ...]) -> int:
    return prod(out_shape) if isinstance(layer, (LIF, SpikingAvgPool)) else 0


def describe(name: str, input: str | Sequence[int] | None = None) -> str:
    """A human-readable summary of a zoo model (``eventsim inspect MODEL``).

    The network's repr, then per layer its neurons (spiking and readout
    neurons, pooling neurons included), synapses (weight counts, no biases)
    and ANN MACs (:meth:`Network.ann_macs`), the totals, the source and the
    notes.
    """
    config = model_config(name)
    network = build_network(config, input=input)
    macs = network.ann_macs()
    rows = [("layer", "type", "output", "neurons", "synapses", "ANN MACs")]
    totals = [0, 0, 0]
    for layer in network.walk():
        out_shape = network.shapes[layer.name][1]
        counts = [
            _neurons(layer, out_shape),
            prod(layer.weight_shape) if isinstance(layer, Weighted) else 0,
            macs.get(layer.name, 0),
        ]
        totals = [t + c for t, c in zip(totals, counts)]
        rows.append((layer.name, type(layer).__name__, str(out_shape)) + tuple(f"{c:,}" if c else "-" for c in counts))
    rows.append(("total", "", "") + tuple(f"{t:,}" for t in totals))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = [
        "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    inputs = ", ".join(f"{k} {tuple(v)}" for k, v in config["inputs"].items())
    return "\n".join(
        [f"{name}: {config['source']}", f"inputs: {inputs}; neuron: {config['neuron']}; kappa: {config['kappa']}",
         "", repr(network), ""]
        + table
        + ["", "notes:"]
        + [f"- {note}" for note in config["notes"]]
    )
