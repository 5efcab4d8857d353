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


WRONG_COLOUR = (255, 0, 0)
IGNORE_COLOUR = (128, 128, 128)


def error_map(image, label, pred, ignore_index=255):
    """Wrong pixels red, ignored pixels grey, correct pixels the input darkened to a third."""
    out = (image.astype(np.uint16) // 3).astype(np.uint8)
    out[(pred != label) & (label != ignore_index)] = WRONG_COLOUR
    out[label == ignore_index] = IGNORE_COLOUR
    return out


def comparison_strip(image, label, pred, palette, ignore_index=255):
    """Input | colourised ground truth | colourised prediction | error map, side by side (all
    at the label's size; ignored ground-truth pixels grey)."""
    truth = colourise(label, palette, IGNORE_COLOUR)
    return np.concatenate([image, truth, colourise(pred, palette),
                           error_map(image, label, pred, ignore_index)], axis=1)
