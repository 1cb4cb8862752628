//! x86_64 specifics: memory layout, boot registers, CPUID.
