"""Delta Sharing: Stratus as a server of the open protocol, with a token per recipient.

``models`` (shares, share tables, recipients, tokens, grants in the metastore database),
``admin``, ``tokens``, ``derived``, ``serving`` and ``reads`` (administration, recipients'
tokens, derived copies, how a table is served, the protocol's reads; composed by ``service`` as
``Stratus.sharing``), ``formats`` (the parquet and delta response formats), ``protocol``
(predicates, pruning, schemas, statistics), ``signing`` (pre-signed file URLs) and ``cli``
(``stratus share ...``). The HTTP layer is :mod:`stratus.api.sharing`.
"""
