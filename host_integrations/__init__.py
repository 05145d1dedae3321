"""darktable and GIMP plug-in sources, shipped as package data for `raw2rgb install`."""
