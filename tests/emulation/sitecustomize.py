"""Installs the device emulation at interpreter start when SEGZOO_EMULATE is set (tests only:
this folder is on PYTHONPATH only in the emulated subprocesses; see emulate_device.py)."""
import os

if os.environ.get("SEGZOO_EMULATE"):
    import emulate_device

    emulate_device.install(os.environ["SEGZOO_EMULATE"])
