"""The peers of ``eventsim bench``'s LeNet workloads: Lee's N-MNIST LeNet5 in other CPU frameworks.

Each is eventsim's network rebuilt as a user of that framework writes it, with
the same weights, run on the same input (:mod:`~eventsim.bench.peers.lenet`
holds what they share: the layers, the weights, the input, the readout check
and the training step):

=============  ============  ====================================================================
system         framework     neurons, and how the time axis is run
=============  ============  ====================================================================
snntorch       snnTorch 1.0  ``snn.Leaky``, stepped by hand (:mod:`~eventsim.bench.peers.snntorch`)
norse          Norse 1.1     ``LIFBoxCell``, ``IAFCell``, ``LIBoxCell`` in a ``SequentialState``,
                             stepped by hand (:mod:`~eventsim.bench.peers.norse`)
spikingjelly   SpikingJelly  multi-step ``LIFNode``, ``IFNode`` (its torch reference, the only CPU
               2.0           implementation), the layers over all T*B images at once
                             (:mod:`~eventsim.bench.peers.spikingjelly`)
sinabs         sinabs 3.1    ``LIFSqueeze``, ``IAFSqueeze``, the layers over all B*T images at once,
                             each neuron layer stepping through time (:mod:`~eventsim.bench.peers.sinabs`)
pytorch        PyTorch       the neurons written out, a loop over ``torch.unbind(x)``
                             (:mod:`~eventsim.bench.peers.plain`)
=============  ============  ====================================================================

A peer whose packages are missing is skipped with the reason and the
command that installs them (:meth:`~eventsim.bench.peers.lenet.Peer.missing_reason`).
"""

from eventsim.bench.peers import norse, plain, sinabs, snntorch, spikingjelly
from eventsim.bench.peers.lenet import Peer

#: The LeNet peers by system name, in the order the bench runs them.
PEERS: dict[str, Peer] = {p.name: p for p in (snntorch.PEER, norse.PEER, spikingjelly.PEER, sinabs.PEER, plain.PEER)}

__all__ = ["PEERS", "Peer"]
