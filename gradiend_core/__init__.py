"""gradiend_core: the GRADIEND method as a plain library (no Prefect import).

GRADIEND trains a one-neuron encoder-decoder on a language model's gradients of masked-token
predictions, then rewrites the model's weights along the learned direction.
"""
__version__ = "0.1.0"
