"""eventsim.datasets: N-MNIST and MNIST readers, data folders and caches.

The data folder is resolved from an explicit argument, then the
``EVENTSIM_DATA`` environment variable; data is never bundled with eventsim.
"""
