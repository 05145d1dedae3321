"""Where and how a model runs: device and precision choice, tiling, and the `Runner` that turns
a packed input into RGB."""
