"""vfrisk models: the multitask bone + muscle network, its training and shipped weights.

Arrives with issue 6; the package exists now because the project layout is fixed.
"""

__all__: list[str] = []
