"""eventsim.datasets: N-MNIST, MNIST, SHD and DVS Gesture readers, tonic's events, data folders and caches.

The data folder is resolved from an explicit argument, then the
``EVENTSIM_DATA`` environment variable, then a per-user folder
(:mod:`~eventsim.datasets.folders`); data is never bundled with eventsim.

- :mod:`~eventsim.datasets.nmnist`: the 5-byte N-MNIST reader with
  validation, the :class:`NMNIST` dataset (first saccade, stabilisation,
  download through tonic), binned and cached with :meth:`NMNIST.binned`;
- :mod:`~eventsim.datasets.mnist`: the idx reader, :func:`load_mnist` and
  :class:`CodedImages` (rate or direct coding on access);
- :mod:`~eventsim.datasets.shd`: the Spiking Heidelberg Digits (HDF5, 700
  channels, 20 classes), :class:`SHD`;
- :mod:`~eventsim.datasets.dvsgesture`: DVS Gesture (128 x 128 x 2, 11
  classes, tonic's ``.npy`` files), :class:`DVSGesture`;
- :mod:`~eventsim.datasets.tonic_events`: any tonic recording or frame
  stack as events (:func:`from_tonic`), a whole tonic dataset as training
  samples (:class:`TonicSamples`);
- :mod:`~eventsim.datasets.cache`: the HDF5 cache of encoded samples.
"""

from eventsim.datasets.cache import EncodedSamples, cached_encoding
from eventsim.datasets.folders import user_folder
from eventsim.datasets.mnist import CodedImages, load_mnist, read_idx
from eventsim.datasets.nmnist import NMNIST, parse_nmnist, read_nmnist, stabilize
from eventsim.datasets.tonic_events import TonicSamples, from_tonic
from eventsim.datasets.shd import SHD, read_shd
from eventsim.datasets.dvsgesture import DVSGesture, read_gesture

__all__ = [
    "CodedImages", "DVSGesture", "EncodedSamples", "NMNIST", "SHD", "TonicSamples", "cached_encoding", "from_tonic",
    "load_mnist", "parse_nmnist", "read_gesture", "read_idx", "read_nmnist", "read_shd", "stabilize", "user_folder",
]
