"""The raw2rgb command-line interface (installed as the package `raw2rgb_cli`)."""
