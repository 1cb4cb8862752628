//! ACPI tables (RSDP, XSDT, FADT, MADT, DSDT) for the guest.
