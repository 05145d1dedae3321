"""Pure tensor steps between the decoded mosaic and the network, each implemented once:
levels, packing, colour, Malvar–He–Cutler interpolation, orientation, classical renderings.

The lowest layer: it imports nothing from raw2rgb but `errors`.
"""
