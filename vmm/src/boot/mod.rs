//! Kernel loading: ELF (PVH or 64-bit boot protocol) and bzImage, decompressed in the monitor.
