"""Importers: turn checkpoints users bring (timm architectures) into model repository versions."""
