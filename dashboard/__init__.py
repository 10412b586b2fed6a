"""vfrisk dashboard: the Streamlit app over the DuckDB database.

Arrives with issue 8; the package exists now because the project layout is fixed.
"""

__all__: list[str] = []
