"""eventsim.encoders: values and recordings turned into events.

- :mod:`~eventsim.encoders.binning`: event-camera recordings -> T steps
  (time window, polarity channels, binary or count);
- :mod:`~eventsim.encoders.rate`: signed Bernoulli rate coding (Lee et al. 2020);
- :mod:`~eventsim.encoders.direct`: the analog value as the current of every step;
- :mod:`~eventsim.encoders.latency`: time to first spike, linear or logarithmic;
- :mod:`~eventsim.encoders.delta`: delta modulation of a sequence;
- :mod:`~eventsim.encoders.saccade`: static images -> N-MNIST-like events (a
  model of the saccade recordings).

Each produces :class:`eventsim.Events` and takes its randomness as an explicit
``numpy.random.Generator`` (or the random numbers themselves).
"""

from eventsim.encoders.binning import bin_events
from eventsim.encoders.delta import delta
from eventsim.encoders.direct import direct
from eventsim.encoders.latency import latency
from eventsim.encoders.rate import rate
from eventsim.encoders.saccade import saccade

__all__ = ["bin_events", "delta", "direct", "latency", "rate", "saccade"]
