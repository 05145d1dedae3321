"""raw2rgb: a learned camera ISP (RAW2RGB-GAN) — camera RAW in, 16-bit TIFF out."""

__version__ = "0.1.0"
