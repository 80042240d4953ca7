"""Candidates that decline cases (eventsim.testing.Unsupported), for tests/test_conform_api.py.

Both are TorchCandidate, which conforms on every case it does not decline.
"""

from __future__ import annotations

import zlib

import eventsim as es
from eventsim.testing import Unsupported
from eventsim.testing.torch_candidate import TorchCandidate


class DeclinesHalf(TorchCandidate):
    """Declines about half of the cases: those whose description hashes odd, with one of two reasons."""

    def build(self, network):
        digest = zlib.crc32(repr(network).encode())
        if digest % 2:
            has_conv = any(isinstance(layer, es.Conv2d) for layer in network.walk())
            raise Unsupported("no convolutions on Tuesdays" if has_conv else "no linear layers on Tuesdays")
        return super().build(network)


class DeclinesAll(TorchCandidate):
    """Declines every case, from run (not build)."""

    def build(self, network):
        model = super().build(network)

        def run(spikes):
            raise Unsupported("this framework supports nothing yet")

        model.run = run
        return model
