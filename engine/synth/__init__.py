"""The synthetic multi-site CT cohort: population, phantom anatomy, scanner and DICOM writer.

Everything this package makes is synthetic. It exists because no real patient CT can be
used to build and test vfrisk; results on it say nothing about clinical performance.
"""

__all__: list[str] = []
