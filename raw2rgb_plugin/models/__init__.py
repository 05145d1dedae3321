"""Networks of RAW2RGB-GAN: G1 (shipped), G2 and D (training only)."""
