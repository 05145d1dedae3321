"""Runtime constants the CLI shows in its help; torch-free so commands start fast."""

#: what --device accepts (plus cuda:N); every command's help text is built from this.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DEVICE_HELP = "auto, cpu, cuda[:N] or mps (auto: CUDA, then MPS, then CPU)."

#: packed pixels of overlap between neighbouring tiles: most of G1's effective receptive field.
DEFAULT_OVERLAP = 64
