"""PSPNet: network, training script, export and demo (see README.md)."""
