"""Bytes in and out: the RAW file (LibRaw via rawpy), its photo metadata, and the writers.

Nothing here knows about networks or profiles; `io` imports only `errors` and `pipeline`.
"""
