"""The portable async classes: one module per primitive, no syscalls of their own."""
