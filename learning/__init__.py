"""eventsim.learning: losses, gradient rules and training.

The gradient rules of the contract (``lee2020``, ``lee2020-code``, ``bptt``
with surrogates), losses, optimizers, the trainer, and ANN-to-SNN conversion,
all built on the forward records of :meth:`eventsim.Network.run`.
"""
