"""eventsim.encoders: values and recordings turned into events.

Event binning (time window -> steps, polarity channels, binary or count),
rate (signed Bernoulli), direct current, latency and delta encoders. Each
produces :class:`eventsim.Events` and takes its randomness as an explicit
``numpy.random.Generator``.
"""
