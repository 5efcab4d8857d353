"""Colourised predictions and overlays."""
import numpy as np


def colourise(label, palette, ignore_colour=(0, 0, 0)):
    """HxW class indices -> HxWx3 uint8 with the dataset palette (255/unknown -> ignore)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = ignore_colour
    lut[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[label]


def overlay(image, colour, opacity=0.5):
    """Blend a colourised mask over an RGB image."""
    blend = image.astype(np.float32) * (1 - opacity) + colour.astype(np.float32) * opacity
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)
