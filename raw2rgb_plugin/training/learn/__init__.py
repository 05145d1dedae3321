"""`raw2rgb learn`: a profile of one camera's own look, learned from the JPEGs it already made.

Every RAW comes with the camera's rendering of it: a sidecar JPEG (RAW+JPEG shooting) or the
preview embedded in the RAW. This package turns a card of such files into a fine-tuned profile:

- `targets`: which JPEG belongs to each RAW, decoded and brought to sensor orientation;
- `pairs`: each RAW resampled onto its target's pixel grid (the preview's scale), stored resumably;
- `patches`: random training crops of the pairs, normalised as `convert` normalises a RAW;
- `lut`: the classical answer (per-channel tone curve + 3D LUT) fitted first; the profile carries it;
- `finetune`: the base profile's G1 fine-tuned through that LUT on low-passed colour (sRGB and
  OKLab), detail held to the base, weights chosen on validation frames;
- `report`: held-out scores of the base, the LUT and the learned profile, with crops;
- `run`: the whole command, resumable, installing the profile only once everything finished;
- `options`: its settings, torch-free (the CLI reads their defaults).
"""
