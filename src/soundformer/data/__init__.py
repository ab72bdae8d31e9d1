"""Data: sources (what files), download, audio decoding and caching, datasets."""
