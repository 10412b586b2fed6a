"""vfrisk engine: index, load, anatomy, inputs, scoring and storage of CT scans.

Heavy libraries (torch, SimpleITK, plotly, streamlit) are imported lazily inside the
functions that need them, so that ``vfrisk --help`` starts fast.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
