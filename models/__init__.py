"""The shipped models (``.tflite`` with a model card ``.json`` beside each, provenance
files, licences), installed as package data and found with ``importlib.resources``
(``facegate.modelcard.MODELS_DIR``)."""
