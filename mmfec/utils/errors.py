"""Errors that mean "the input is wrong", which mmfec's tools print as one line.

Defined here, at the bottom of the package, so that the models can raise them and the
tools can catch them without the tools' helpers importing the models."""


class InputError(ValueError):
    """Data a model cannot take (e.g. an image of another number of channels); the tools
    print it as one ``error: ...`` line."""
