"""vfrisk dashboard: the Streamlit app over the DuckDB database (``vfrisk dashboard``).

Modules: ``app`` (entry point, ``st.navigation``) and ``pages/`` (thin pages);
``common`` (sidebar filters and page helpers), ``data`` (cached read-only queries of
``engine.store.dashboard_tables``), ``stats`` (survival and ROC from aggregated counts),
``figures`` (plotly), ``export`` (worklist rows and audited CSV), ``ids`` (pseudonyms),
``upload`` (safe extraction), ``launch`` and ``settings`` (the server and its
configuration). Streamlit and plotly are imported only by the modules that draw.
"""

__all__: list[str] = []
