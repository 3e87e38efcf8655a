"""The NPO learning and decision core: pure Python + numpy, no I/O."""
