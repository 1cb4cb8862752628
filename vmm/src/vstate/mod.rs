//! KVM VM, vCPUs and guest memory.
