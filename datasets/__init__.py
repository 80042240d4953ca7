"""eventsim.datasets: N-MNIST and MNIST readers, data folders and caches.

The data folder is resolved from an explicit argument, then the
``EVENTSIM_DATA`` environment variable, then a per-user folder
(:mod:`~eventsim.datasets.folders`); data is never bundled with eventsim.

- :mod:`~eventsim.datasets.nmnist`: the 5-byte N-MNIST reader with
  validation, the :class:`NMNIST` dataset (first saccade, stabilisation,
  download through tonic), binned and cached with :meth:`NMNIST.binned`;
- :mod:`~eventsim.datasets.mnist`: the idx reader, :func:`load_mnist` and
  :class:`CodedImages` (rate or direct coding on access);
- :mod:`~eventsim.datasets.cache`: the HDF5 cache of encoded samples.
"""

from eventsim.datasets.cache import EncodedSamples, cached_encoding
from eventsim.datasets.folders import user_folder
from eventsim.datasets.mnist import CodedImages, load_mnist, read_idx
from eventsim.datasets.nmnist import NMNIST, parse_nmnist, read_nmnist, stabilize

__all__ = [
    "CodedImages", "EncodedSamples", "NMNIST", "cached_encoding", "load_mnist", "parse_nmnist", "read_idx", "read_nmnist",
    "stabilize", "user_folder",
]
